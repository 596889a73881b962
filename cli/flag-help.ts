/**
 * What each flag of the peers' commands does, and its default, for
 * `pdd <command> --help` (issue 16: flags were listed without either). Plain
 * data, so help still loads no command module; cli/flag-help.test.ts checks
 * that every flag a command parses is described here.
 */

/** [flag as typed, what it does (default)] */
export type FlagHelp = readonly (readonly [string, string])[];

const CLOUD_LINK: FlagHelp = [
  [
    "--cloud URL",
    "the cloud: ws://HOST:PORT/pdd or wss:// (WebSocket), grpc://HOST:PORT or grpcs:// (gRPC), https://HOST:PORT/pdd/v1 (WebTransport)",
  ],
  ["--token T", "the API key the cloud's keys file holds (default: none)"],
  ["--ca PEM", "a CA or certificate file to trust for wss://, grpcs:// and https:// (default: the system's CAs)"],
  [
    "--cert-sha256 HEX",
    "pin the WebTransport certificate `pdd cloud` printed as webtransportCertSha256 (https:// only)",
  ],
  ["--codec proto|msgpack", "the frame codec; gRPC carries proto only (default: proto)"],
  ["--model PATH", "the device's GGUF model, or sim:PROFILE for a simulated engine (default: the embedded tiny model)"],
  ["--no-kv", "never ask the cloud for KV chunks: always recompute the prompt locally (default: KV when models match)"],
  ["--threads N", "CPU threads for local inference (default: all cores but one)"],
  [
    "--emulate-ms-per-token N",
    "add N ms to each local prefill and decode token, so a fast machine behaves like a phone (default: 0)",
  ],
  ["--device-profile phone|phone-npu", "emulate a published device profile's prefill and decode rates instead"],
];

export const FLAG_HELP: Readonly<Record<string, FlagHelp>> = {
  cloud: [
    [
      "--model PATH",
      "the GGUF model to serve (default: the embedded tiny model, written to $PDD_CACHE or the package's .pdd-cache)",
    ],
    ["--config FILE", "a JSON config file (docs/deployment.md lists its keys); flags override it"],
    ["--engine llama-cpp|llama-server", "infer in this process, or on llama-server backends (default: llama-cpp)"],
    ["--backend URL", "a llama-server base URL (repeat for several; --engine llama-server)"],
    [
      "--backend-api native|openai",
      "generation over llama-server's /completion, or OpenAI's /v1/completions with token IDs (vLLM's API; default: native)",
    ],
    ["--slot-save-dir DIR", "this machine's path of the backends' --slot-save-path, for KV transfer"],
    [
      "--refine-model FILE",
      "a small GGUF with the served model's tokenizer, loaded here to score prompts for refinement (llama-server only)",
    ],
    ["--ws HOST:PORT", "WebSocket listener (default: 127.0.0.1:4100; port 0 picks a free one)"],
    ["--grpc HOST:PORT", "gRPC listener (default: 127.0.0.1:4101)"],
    ["--webtransport HOST:PORT", "WebTransport (HTTP/3) listener (default: 127.0.0.1:4102)"],
    ["--no-ws, --no-grpc, --no-webtransport", "do not listen on that binding (at least one must remain)"],
    [
      "--tls-cert PEM --tls-key PEM",
      "certificate and key files for wss://, grpcs:// and WebTransport (default: plain ws and grpc; a generated self-signed certificate for WebTransport)",
    ],
    [
      "--cert-out FILE",
      "where the generated WebTransport certificate is written (default: $TMPDIR/pdd-cloud-cert-PORT.pem)",
    ],
    ["--sequences N", "requests decoding at once (default: 4)"],
    ["--threads N", "CPU threads for inference (default: all cores but one)"],
    ["--queue N", "requests that may wait for a sequence; beyond it, RESOURCE_EXHAUSTED (default: 64)"],
    ["--max-budget N", "the most tokens the cloud streams for one request, whatever the device asks (default: 256)"],
    [
      "--pace X",
      "send answer tokens at X times the device's display rate; 0 = as fast as the cloud decodes (default: 2)",
    ],
    ["--keys FILE", "API keys, one per line: KEY [MAX_CONCURRENT]; re-read on SIGHUP (default: no authentication)"],
    ["--metrics-port N", "serve Prometheus text on http://127.0.0.1:N/metrics (default: off)"],
    ["--log-level debug|info|warn|error|silent", "JSON log lines on stderr at this level and above (default: info)"],
  ],
  device: [
    ["--prompt TEXT | --prompt-file FILE", "the prompt (one of them is required)"],
    ...CLOUD_LINK,
    ["--max-tokens N", "the most answer tokens (default: 64)"],
    [
      "--budget N",
      "the most tokens the cloud streams before the device takes over (default: the planner's choice for this prompt)",
    ],
    ["--tpot-ms N", "the display pace a person reads at, ms per token; 0 = as fast as possible (default: 40)"],
    ["--refine RATIO", "ask the cloud for a refined prompt of this ratio of the original, in (0, 1] (default: none)"],
    ["--refine-min RATIO", "let the planner pick a refinement ratio no lower than this (default: 1, no refinement)"],
    ["--local-only", "run on the device alone, without a cloud"],
    ["--no-fallback", "exit 1 when the cloud cannot serve, instead of answering on the device alone"],
    ["--json", "print the run's report as one JSON object instead of the answer text"],
  ],
  "device serve": [
    ...CLOUD_LINK,
    ["--host HOST", "the address to listen on (default: 127.0.0.1)"],
    ["--port N", "the port to listen on; 0 picks a free one (default: 8080)"],
    ["--parallel N", "requests served at once, each on its own device sequence (default: 4)"],
    ["--queue N", "requests that may wait beyond --parallel; then 503 with Retry-After (default: 8)"],
    ["--tpot-ms N", "pace of streamed answers, ms per token; unstreamed answers are never paced (default: 40)"],
    ["--alias NAME", "the model id clients must name (default: pdd-device)"],
    ["--api-key KEY", "require Authorization: Bearer KEY; prefer $PDD_SERVE_API_KEY, which ps does not show"],
    [
      "--allowed-hosts H,H",
      "Host names accepted besides loopback and IP addresses, against DNS rebinding; * = any (default: any when bound beyond loopback)",
    ],
    ["--cors-origin O,O", "origins browsers may call from (default: none)"],
    ["--max-body-bytes N", "the largest request body (default: 4194304)"],
    [
      "--chat-template-file FILE",
      "a Jinja chat template instead of the model's tokenizer.chat_template (default: the model's, else a plain fallback)",
    ],
    [
      "--no-fallback",
      "do not start when the cloud cannot be reached at startup (exit 1); later, a request the cloud cannot serve gets an error naming the cause",
    ],
  ],
  plan: [
    ["--prompt-tokens N", "the prompt's length in tokens (required)"],
    ["--answer-tokens N", "the answer's expected length (default: 256)"],
    ["--rtt-ms MS", "round trip to the cloud (default: 50)"],
    ["--bandwidth-mbps M", "the link's bandwidth, for KV transfer (default: 100)"],
    ["--cloud-queue-ms MS", "time a request waits in the cloud's queue (default: 0)"],
    ["--cloud-prefill T/S, --cloud-decode T/S", "cloud rates in tokens per second (default: the cloud-GPU profile)"],
    ["--device-prefill T/S, --device-decode T/S", "device rates in tokens per second (default: the phone profile)"],
    ["--tpot-ms MS", "the display pace to keep, as pdd device uses it (default: 40)"],
    ["--max-budget N", "the cloud's budget limit (default: 256)"],
    ["--kv-bytes-per-token B", "KV bytes per token; 0 leaves KV transfer out (default: 0)"],
    ["--refine-min-ratio R", "the lowest refinement ratio allowed, in (0, 1]; 1 = none (default: 1)"],
    ["--explain", "say why: every candidate with its predictions"],
    ["--json", "the whole plan as JSON"],
  ],
  "model create": [
    ["--preset NAME", "tiny (the embedded default), tiny-eos, small, tiny-b, spec or bench (default: tiny)"],
    [
      "--out PATH",
      "where the GGUF is written (default: $PDD_CACHE/pdd-PRESET.gguf, else the package's .pdd-cache folder)",
    ],
  ],
};

/** The flag lines of a command's help, aligned; empty when none are written down. */
export function flagLines(command: string): string[] {
  const flags = FLAG_HELP[command];
  if (!flags) return [];
  const width = Math.min(32, Math.max(...flags.map(([f]) => f.length)));
  return [
    "flags:",
    ...flags.map(([f, what]) =>
      f.length > width ? `  ${f}\n  ${" ".repeat(width)}  ${what}` : `  ${f.padEnd(width)}  ${what}`,
    ),
  ];
}
