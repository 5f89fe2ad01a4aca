# The front door. `make test` and `make demo` work on a fresh machine: they install
# what they need (the wasm toolchain, via scripts/build-contract.sh) by themselves.

CARGO ?= cargo
ARGS ?=

.PHONY: test contract demo bench fmt clippy

## Build the wasm and run every test.
test: contract
	$(CARGO) test --workspace --locked

## Build target/near/multichain.wasm.
contract:
	@scripts/build-contract.sh

## The main job. Until the devnet and the node land, it shows what a NEAR account
## controls: its derived key and Ethereum address under the public MPC root keys.
demo: contract
	@$(CARGO) run --quiet --locked -p chain-signatures-primitives --example derive -- $(ARGS)

## Cost of the threshold protocols per party, ours next to raw cait-sith (release build).
bench:
	$(CARGO) bench --locked -p threshold

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
