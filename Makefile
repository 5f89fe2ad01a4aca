# The front door. `make test` and `make demo` work on a fresh machine: they install
# what they need (the wasm toolchain, via scripts/build-contract.sh) by themselves.

CARGO ?= cargo
ARGS ?=

.PHONY: test contract demo derive chainsig anvil solana-rpc bench bench-e2e sim soak fmt clippy

## Build the wasm and run every test.
test: contract
	$(CARGO) test --workspace --locked

## Build target/near/multichain.wasm.
contract:
	@scripts/build-contract.sh

## The main job: devnet, contract, three mpc-node processes, a local anvil and a local
## Solana runtime (LiteSVM); a NEAR account's derived Ethereum address sends 0.1 ETH
## (secp256k1, domain 0) and its Solana address 0.1 SOL (Ed25519, domain 1), signed by
## the network. ARGS=--json prints one JSON object; ARGS=--keep leaves everything running.
demo: contract
	@scripts/install-anvil.sh >/dev/null
	@scripts/install-litesvm.sh >/dev/null
	@$(CARGO) build --quiet --locked -p mpc-node -p chainsig -p integration-tests
	@target/debug/demo $(ARGS)

## What an account controls under the public testnet/mainnet root keys (--domain 0:
## secp256k1 and its Ethereum address, --domain 1: Ed25519 and its Solana address), e.g.
## make derive ARGS="--network mainnet you.near ethereum-1".
derive:
	@$(CARGO) run --quiet --locked -p chain-signatures-primitives --example derive -- $(ARGS)

## The chainsig client (addresses, Ethereum, Bitcoin and Solana transactions signed by
## the network), e.g. make chainsig ARGS="address --chain ethereum --account you.testnet --path ethereum-1".
chainsig:
	@$(CARGO) run --quiet --locked -p chainsig -- $(ARGS)

## anvil (a real Ethereum node, pinned, from the npm registry) into target/tools; the
## Ethereum tests install it themselves.
anvil:
	@scripts/install-anvil.sh

## A Solana JSON-RPC endpoint on LiteSVM (a real Solana runtime, pinned, from the npm
## registry into target/tools/litesvm) at http://127.0.0.1:8899, for `chainsig sol send
## --rpc localhost`; ARGS="--port N". The Solana tests start their own.
solana-rpc:
	@scripts/install-litesvm.sh >/dev/null
	@node scripts/solana-rpc.mjs $(ARGS)

## Cost of the threshold protocols per party, ours next to raw cait-sith (release build).
bench:
	$(CARGO) bench --locked -p threshold

## End-to-end latency and throughput of devnet + contract + node processes, next to
## the cryptography's own cost (release build). ARGS="--shapes 3x2 --burst 30" etc.
bench-e2e: contract
	@$(CARGO) build --quiet --release --locked -p mpc-node -p integration-tests
	@target/release/e2e-bench $(ARGS)

## The node's deterministic simulation, long mode: SIM_SEEDS seeds (500) per
## scenario and scheme, release build. Replay one: SIM_SEED=<seed> make sim.
SIM_SEEDS ?= 500
sim:
	SIM_SEEDS=$(SIM_SEEDS) $(CARGO) test --locked --release -p mpc-node --test simulation -- --nocapture

## Soak: 10 minutes of sign requests (both domains) while a random node is killed
## (SIGKILL) and restarted every 30 s; then checks every request was answered or
## timed out and refunded, no nonce repeated, no node panicked. Not in `make test`.
## ARGS="--minutes 2 --kill-every 20 --nodes 5 --threshold 3 --seed 7"; --help.
soak: contract
	@$(CARGO) build --quiet --locked -p mpc-node -p chainsig -p integration-tests
	@target/debug/soak $(ARGS)

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
