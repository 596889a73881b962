/**
 * The `pdd` commands: name, summary and usage, and where each one's implementation
 * lives. A module is imported only when its command runs, so `pdd --help`
 * and `pdd <command> --help` load none of them (nor node-llama-cpp, nor the peers).
 */
import type { Run } from "./kit.js";

export interface CommandSpec {
  /** e.g. "decode" or "bench trace" */
  readonly name: string;
  readonly summary: string;
  readonly usage: string;
  load(): Promise<Run>;
}

export const COMMANDS: readonly CommandSpec[] = [
  {
    name: "demo",
    summary:
      "a cloud behind an emulated network and a device: one long prompt over every transport, against the baselines",
    usage:
      "pdd demo [--model FILE.gguf] [--device phone-npu|phone|none] [--no-sweep] [--rtt-ms 50] [--bandwidth-mbps 100]\n" +
      "         [--notes N] [--max-tokens 48] [--budget N] [--codec proto|msgpack] [--json]\n" +
      "  --model: a GGUF model for both peers (default: the embedded one); exit 1 with one line when the file\n" +
      "    is missing or not GGUF, or when --notes and --max-tokens do not fit its context (without --notes\n" +
      "    the prompt is shortened to fit, and the output says so); exit 2 for a bad flag",
    load: async () => (await import("./demo.js")).runDemo,
  },
  {
    name: "cloud",
    summary: "run the reference cloud peer (WebSocket, gRPC and WebTransport at once)",
    usage:
      "pdd cloud [--model PATH] [--engine llama-cpp|llama-server --backend URL ... [--backend-api native|openai] [--slot-save-dir DIR] [--refine-model PATH]] [--config FILE] [--ws HOST:PORT] [--grpc HOST:PORT] [--webtransport HOST:PORT] [--no-ws] [--no-grpc] [--no-webtransport]\n" +
      ("          [--tls-cert PEM --tls-key PEM] [--sequences N] [--threads N] [--queue N] [--max-budget " +
        "N] [--pace X] [--keys FILE] [--metrics-port N] [--log-level LEVEL]\n") +
      "          [--cert-out FILE]   where the generated WebTransport certificate goes (default: $TMPDIR/pdd-cloud-cert-PORT.pem)",
    load: async () => (await import("./cloud.js")).runCloud,
  },
  {
    name: "device",
    summary: "answer a prompt with the reference device (P/D-Device with a cloud, or --local-only)",
    usage:
      "pdd device [--cloud URL] [--prompt TEXT | --prompt-file FILE] [--model PATH] [--max-tokens N] [--budget N] [--tpot-ms N]\n" +
      "           [--no-kv] [--refine RATIO | --refine-min RATIO] [--local-only | --no-fallback] [--token T] [--ca PEM] [--cert-sha256 HEX]\n" +
      "           [--codec proto|msgpack] [--emulate-ms-per-token N | --device-profile phone|phone-npu] [--threads N] [--json]\n" +
      "exit status: 0 answered (a fallback to the device alone is said on stderr), 1 a typed failure (a bad model file;\n" +
      "             with --no-fallback, a cloud that could not serve: the cause is on stderr), 2 a usage error",
    load: async () => (await import("./device.js")).runDevice,
  },
  {
    name: "device serve",
    summary: "serve an OpenAI-compatible API (/v1/chat/completions, /v1/completions) backed by the reference device",
    usage:
      "pdd device serve [--cloud URL] [--model PATH] [--host HOST] [--port N] [--token T] [--ca PEM] [--cert-sha256 HEX] [--codec proto|msgpack] [--no-kv] [--threads N]\n" +
      "                 [--parallel N] [--queue N] [--tpot-ms N] [--alias NAME] [--api-key KEY] [--allowed-hosts H,H] [--cors-origin O,O]\n" +
      "                 [--max-body-bytes N] [--chat-template-file FILE] [--emulate-ms-per-token N | --device-profile phone|phone-npu] [--no-fallback]\n" +
      "  --api-key KEY or $PDD_SERVE_API_KEY (kept out of ps); --tpot-ms paces streamed answers only (default 40).\n" +
      "exit status: 0 after SIGINT/SIGTERM, 1 a typed failure (a bad model file, a busy port, --no-fallback with a cloud it\n" +
      "cannot use; one line naming it), 2 a usage error",
    load: async () => (await import("./device-serve.js")).runDeviceServe,
  },
  {
    name: "conformance",
    summary:
      "run the conformance suite against a cloud (the suite plays the device) or a device (the suite plays the cloud)",
    usage:
      "pdd conformance --role cloud --target URL [--codec proto|msgpack] [--ca PEM | --cert-sha256 HEX] [--token T] [options]\n" +
      "       pdd conformance --role device --listen URL [--exec COMMAND] [--codec proto|msgpack] [options]\n" +
      "  options: [--model GGUF] [--case TEXT[,TEXT]] [--json FILE] [--junit FILE] [--verbose]\n" +
      "  --model GGUF: the peer's model file, to check the fingerprints it announces (Appendix B).\n" +
      "  --exec COMMAND runs the device once per case; {url}, {codec}, {ca} and {cert_sha256} are replaced,\n" +
      "  and the command must print the answer it displays on stdout.\n" +
      "exit status: 0 no case failed, 1 a case failed or a typed failure (one line), 2 a usage error, 3 the target could not be reached\n" +
      "             (no case ran; the cause is on stderr and in --json/--junit)",
    load: async () => (await import("./conformance.js")).runConformanceCommand,
  },
  {
    name: "fuzz",
    summary:
      "fuzz a live cloud with mutated frame sequences over every binding (an in-process reference cloud by default)",
    usage:
      "pdd fuzz [--target URL] [--codec proto|msgpack] [--cases N] [--seed N] [--token T] [--ca PEM]\n" +
      "         [--metrics URL] [--check-every N] [--json FILE]\n " +
      " Without --target: a reference cloud on loopback, over WebSocket (both codecs), gRPC and WebTransport.\n " +
      " Liveness: after every case a Ping is answered or the connection closed with a code; after every\n " +
      " --check-every cases (default 250) and at the end, a normal device gets the greedy answer the cloud gave\n " +
      " before fuzzing, every token to End, within max(5 s, 10 x its time), and --metrics (a Prometheus URL;\n " +
      " the in-process cloud's by default) shows 0 pdd_sequences_active, pdd_engine_sequences_busy and\n " +
      " pdd_queue_depth.\n " +
      " A failure names its cause (no-pong, undecodable, no-answer, wrong-answer, slow-answer, held, baseline)\n " +
      " on stderr and in --json; a case the cloud does not survive is appended to conformance/fuzz-corpus/cloud.json.\n" +
      "exit status: 0 every case and check passed, 1 a case or check failed, 2 a usage error,\n" +
      "             3 the cloud gave no full answer before any fuzzing (no case ran)",
    load: async () => (await import("./fuzz.js")).runFuzz,
  },
  {
    name: "plan",
    summary: "choose the cloud budget, pacing, refinement ratio and KV transfer for one request, with predictions",
    usage:
      "pdd plan --prompt-tokens N [--answer-tokens N] [--rtt-ms MS] [--bandwidth-mbps M] [--cloud-queue-ms MS]\n" +
      "         [--cloud-prefill T/S] [--cloud-decode T/S] [--device-prefill T/S] [--device-decode T/S] [--tpot-ms MS]\n" +
      "         [--max-budget N] [--kv-bytes-per-token B] [--refine-min-ratio R] [--explain] [--json]\n" +
      "  Rates default to the phone and cloud-GPU profiles of the trace benchmark (published llama.cpp measurements).",
    load: async () => (await import("./plan.js")).runPlan,
  },
  {
    name: "bench trace",
    summary: "simulate a request trace: device-only, cloud-only and P/D-Device side by side at several RTTs",
    usage:
      "pdd bench trace (--trace FILE | --shape long-prompt-short-answer|short-prompt-long-answer|bursty)\n" +
      "                [--limit N] [--rtt-ms 20,50,150] [--capacity N] [--time-scale X] [--tpot-ms MS]\n" +
      "                [--bandwidth-mbps M] [--refine-min-ratio R] [--jitter F] [--seed N] [--json FILE] [--plots DIR] [--real N]\n" +
      "                [--batching vllm-h100|none] [--max-cloud-budget N]\n" +
      "                [--device-prefill T/S] [--device-decode T/S] [--device-profile phone|phone-npu]\n" +
      ("                [--live N [--transport ws|grpc|webtransport] [--live-rtt-ms MS] [--live-modes " +
        "pd,cloud-only,device-only] [--max-prompt N] [--max-answer N]]\n") +
      "  --real N: also run the first N requests through the llama.cpp peers and compare with the simulation.\n" +
      "  --live N: also replay the first N requests through the real cloud, devices, binding and an emulated network,\n" +
      "            with simulated engines on the same profiles, at the trace's arrival times (× --time-scale),\n" +
      "            and compare each request with the model. Prompts and answers are clipped to --max-prompt/--max-answer.\n" +
      "  --shape: a synthetic trace of that shape (bench/sim/shapes.ts), --limit requests, from --seed.\n" +
      "  --batching: how a cloud sequence's decode slows with the batch (bench/sim/batching.ts); default vllm-h100.\n" +
      "  FILE: Azure LLM inference CSV (TIMESTAMP,ContextTokens,GeneratedTokens).",
    load: async () => (await import("./bench-trace.js")).runBenchTrace,
  },
  {
    name: "model create",
    summary: "generate a deterministic llama GGUF test model (tiny, small, tiny-b, bench, spec)",
    usage: "pdd model create [--preset tiny|tiny-eos|tiny-ctx128|small|tiny-b|bench|spec] [--out PATH]",
    load: async () => (await import("./model.js")).runModelCreate,
  },
  {
    name: "decode",
    summary: "decode one pdd.v1 frame (hex, base64 or a file) and print it as JSON",
    usage: "pdd decode --from device|cloud [--codec proto|msgpack] (--hex HEX | --base64 B64 | --file PATH)",
    load: async () => (await import("./decode.js")).runDecode,
  },
  {
    name: "encode",
    summary: "encode one pdd.v1 frame written as JSON (what pdd decode prints) and print its bytes",
    usage:
      "pdd encode --from device|cloud [--codec proto|msgpack] (--json JSON | --file PATH) [--format hex|base64 | --out FILE]",
    load: async () => (await import("./encode.js")).runEncode,
  },
];
