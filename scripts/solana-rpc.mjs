#!/usr/bin/env node
// A Solana JSON-RPC endpoint on loopback, backed by LiteSVM (the Agave SVM in a
// library: real signature verification, fees, the system program). It serves the
// handful of methods `chainsig sol send` and its tests use, in the shapes Solana's
// RPC gives them, and refuses anything else with a JSON-RPC error:
//
//   getLatestBlockhash, getBalance, getMinimumBalanceForRentExemption,
//   getFeeForMessage, sendTransaction (base64 or base58), getSignatureStatuses,
//   requestAirdrop, getHealth, getVersion
//
// As a real RPC does with preflight on, sendTransaction executes the transaction
// and answers with an error if it fails (nothing is committed then); a transaction
// that succeeded is final at once (LiteSVM has no forks), so getSignatureStatuses
// says "finalized".
//
//   scripts/install-litesvm.sh      # once: LiteSVM, pinned, into target/tools
//   node scripts/solana-rpc.mjs [--port N]    # prints "listening on http://127.0.0.1:N"
//
// LiteSVM is loaded from $LITESVM_PREFIX/node_modules (default target/tools/litesvm,
// where install-litesvm.sh puts it).

import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const prefix = process.env.LITESVM_PREFIX || join(root, "target/tools/litesvm");
const require = createRequire(join(prefix, "package.json"));
let litesvm, errorNames, kit;
try {
  litesvm = require("litesvm");
  kit = require("@solana/kit");
  // LiteSVM reports field-less transaction errors as numbers of an enum that only
  // its type declarations name (a TypeScript const enum, gone at run time): read
  // the names from there rather than copy them.
  const declarations = readFileSync(require.resolve("litesvm/dist/internal.d.ts"), "utf8");
  const body = declarations.match(/enum TransactionErrorFieldless \{([^}]*)\}/)?.[1] ?? "";
  errorNames = new Map([...body.matchAll(/(\w+)\s*=\s*(\d+)/g)].map(([, name, n]) => [Number(n), name]));
} catch (error) {
  console.error(`solana-rpc: LiteSVM is not installed in ${prefix} (run scripts/install-litesvm.sh): ${error.message}`);
  process.exit(1);
}

// LiteSVM charges the default fee structure: this many lamports per signature
// (the tests check the balances against it).
const LAMPORTS_PER_SIGNATURE = 5000n;
// Solana's limit on a serialized transaction (the IPv6 MTU less headers).
const PACKET_DATA_SIZE = 1232;
const MAX_BODY = 64 * 1024;

const base58 = kit.getBase58Codec();
const base64 = kit.getBase64Codec();
const transactionDecoder = kit.getTransactionDecoder();
const svm = new litesvm.LiteSVM();
// LiteSVM keeps no slots of its own: count one per committed transaction, so
// answers carry a context like a real node's.
let slot = 1n;

class RpcError extends Error {
  constructor(code, message, data) {
    super(message);
    this.code = code;
    this.data = data;
  }
}
const invalidParams = (message) => new RpcError(-32602, `Invalid params: ${message}`);

function param(params, index, what) {
  if (!Array.isArray(params)) throw invalidParams("params must be an array");
  if (params.length <= index) throw invalidParams(`missing ${what}`);
  return params[index];
}

function config(params, index) {
  const value = Array.isArray(params) ? params[index] : undefined;
  if (value === undefined || value === null) return {};
  if (typeof value !== "object" || Array.isArray(value)) throw invalidParams("the config must be an object");
  return value;
}

function address(text, what) {
  if (typeof text !== "string") throw invalidParams(`${what} must be a base58 string`);
  try {
    return kit.address(text);
  } catch {
    throw invalidParams(`${what} is not a valid address: ${text}`);
  }
}

function lamports(value, what) {
  if (typeof value === "number" && Number.isSafeInteger(value) && value >= 0) return BigInt(value);
  throw invalidParams(`${what} must be a non-negative integer below 2^53`);
}

function decode(text, encoding) {
  if (typeof text !== "string") throw invalidParams("the transaction must be a string");
  try {
    if (encoding === "base64") return new Uint8Array(base64.encode(text));
    if (encoding === "base58") return new Uint8Array(base58.encode(text));
  } catch (error) {
    throw invalidParams(`the transaction is not valid ${encoding}: ${error.message}`);
  }
  throw invalidParams(`unsupported encoding: ${encoding}`);
}

const context = () => ({ slot });

function status(signature) {
  const found = svm.getTransaction(signature);
  if (found === null) return null;
  // The history holds failed transactions too (they paid their fee).
  const failed = found instanceof litesvm.FailedTransactionMetadata;
  const err = failed ? errorJson(found.err()) : null;
  return {
    slot,
    confirmations: null,
    err,
    status: failed ? { Err: err } : { Ok: null },
    confirmationStatus: "finalized",
  };
}

// LiteSVM's error objects print as Rust's Debug form; that text is what a user
// needs, and it names the error as Solana's RPC does.
function errorJson(err) {
  return typeof err === "number" ? transactionErrorName(err) : String(err);
}

function transactionErrorName(code) {
  return errorNames.get(code) ?? `TransactionError(${code})`;
}

const methods = {
  getHealth: () => "ok",
  getVersion: () => ({ "solana-core": "litesvm-1.5.0", "feature-set": 0 }),
  getLatestBlockhash: (params) => {
    config(params, 0);
    // LiteSVM accepts its latest blockhash until expireBlockhash; report a height
    // window like mainnet's (150 blocks).
    return { context: context(), value: { blockhash: svm.latestBlockhash(), lastValidBlockHeight: slot + 150n } };
  },
  getBalance: (params) => {
    const owner = address(param(params, 0, "the account address"), "the account address");
    config(params, 1);
    return { context: context(), value: svm.getBalance(owner) ?? 0n };
  },
  getMinimumBalanceForRentExemption: (params) => {
    const size = lamports(param(params, 0, "the data length"), "the data length");
    return svm.minimumBalanceForRentExemption(size);
  },
  getFeeForMessage: (params) => {
    const message = decode(param(params, 0, "the message"), "base64");
    config(params, 1);
    // The first byte of a legacy message is its number of required signatures; a
    // versioned message starts with 0x80 | version, then that number.
    const signers = message[0] & 0x80 ? message[1] : message[0];
    if (signers === undefined) throw invalidParams("the message is empty");
    return { context: context(), value: BigInt(signers) * LAMPORTS_PER_SIGNATURE };
  },
  sendTransaction: (params) => {
    const options = config(params, 1);
    const bytes = decode(param(params, 0, "the transaction"), options.encoding ?? "base58");
    if (bytes.length > PACKET_DATA_SIZE) {
      throw invalidParams(`the transaction is ${bytes.length} bytes, more than ${PACKET_DATA_SIZE}`);
    }
    let transaction;
    try {
      transaction = transactionDecoder.decode(bytes);
    } catch (error) {
      throw invalidParams(`failed to deserialize the transaction: ${error.message}`);
    }
    const signature = base58.decode(Object.values(transaction.signatures)[0] ?? new Uint8Array(64));
    let result;
    try {
      result = svm.sendTransaction(transaction);
    } catch (error) {
      throw invalidParams(error.message);
    }
    if (result instanceof litesvm.FailedTransactionMetadata) {
      const err = errorJson(result.err());
      if (err === "SignatureFailure") {
        throw new RpcError(-32003, "Transaction signature verification failure");
      }
      const logs = result.meta().logs();
      throw new RpcError(-32002, `Transaction simulation failed: ${err}`, { err, logs });
    }
    slot += 1n;
    return signature;
  },
  getSignatureStatuses: (params) => {
    const signatures = param(params, 0, "the signatures");
    config(params, 1);
    if (!Array.isArray(signatures) || signatures.length > 256) {
      throw invalidParams("the signatures must be an array of at most 256");
    }
    const value = signatures.map((text) => {
      if (typeof text !== "string") throw invalidParams("a signature must be a base58 string");
      let bytes;
      try {
        bytes = base58.encode(text);
      } catch {
        throw invalidParams(`not base58: ${text}`);
      }
      if (bytes.length !== 64) throw invalidParams(`a signature is 64 bytes: ${text}`);
      return status(text);
    });
    return { context: context(), value };
  },
  requestAirdrop: (params) => {
    const to = address(param(params, 0, "the recipient"), "the recipient");
    const amount = lamports(param(params, 1, "the lamports"), "the lamports");
    const result = svm.airdrop(to, amount);
    if (result === null || result instanceof litesvm.FailedTransactionMetadata) {
      throw new RpcError(-32603, `airdrop failed: ${result === null ? "no result" : errorJson(result.err())}`);
    }
    slot += 1n;
    return base58.decode(result.signature());
  },
};

// JSON numbers above 2^53 lose precision in JavaScript: write bigints as exact
// integers (Solana's RPC answers lamports as plain JSON numbers).
function stringify(value) {
  return JSON.stringify(value, (_, v) => (typeof v === "bigint" ? `__bigint__${v}` : v)).replace(
    /"__bigint__(\d+)"/g,
    "$1",
  );
}

function answer(request) {
  const id = request && typeof request === "object" && "id" in request ? request.id : null;
  const fail = (error) => ({
    jsonrpc: "2.0",
    id,
    error: { code: error.code ?? -32603, message: error.message, ...(error.data ? { data: error.data } : {}) },
  });
  if (!request || typeof request !== "object" || request.jsonrpc !== "2.0" || typeof request.method !== "string") {
    return fail(new RpcError(-32600, "Invalid request"));
  }
  const method = methods[request.method];
  if (!Object.hasOwn(methods, request.method)) {
    return fail(new RpcError(-32601, `Method not found: ${request.method} (this LiteSVM endpoint serves ${Object.keys(methods).join(", ")})`));
  }
  try {
    return { jsonrpc: "2.0", id, result: method(request.params ?? []) };
  } catch (error) {
    return fail(error instanceof RpcError ? error : new RpcError(-32603, `Internal error: ${error.message}`));
  }
}

const server = createServer((req, res) => {
  const reply = (status, body) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(body);
  };
  if (req.method !== "POST") return reply(405, stringify({ jsonrpc: "2.0", id: null, error: { code: -32600, message: "POST JSON-RPC requests" } }));
  const chunks = [];
  let size = 0;
  req.on("data", (chunk) => {
    size += chunk.length;
    if (size > MAX_BODY) {
      reply(413, stringify({ jsonrpc: "2.0", id: null, error: { code: -32600, message: "request too large" } }));
      req.destroy();
    } else {
      chunks.push(chunk);
    }
  });
  req.on("end", () => {
    if (size > MAX_BODY) return;
    let request;
    try {
      request = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch {
      return reply(200, stringify({ jsonrpc: "2.0", id: null, error: { code: -32700, message: "Parse error" } }));
    }
    const body = Array.isArray(request) ? request.map(answer) : answer(request);
    reply(200, stringify(body));
  });
});

const portFlag = process.argv.indexOf("--port");
const port = portFlag >= 0 ? Number(process.argv[portFlag + 1]) : 8899;
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`solana-rpc: --port wants a port number, got ${process.argv[portFlag + 1]}`);
  process.exit(1);
}
server.listen(port, "127.0.0.1", () => {
  // The one line on stdout: whoever started us reads the address from it.
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => server.close(() => process.exit(0)));
