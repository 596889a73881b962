/**
 * One fully populated example of every envelope body, used by the codec
 * tests, the cross-decoder test and the fuzzer's seed corpus.
 * @internal test support
 */
import { create } from "@bufbuild/protobuf";
import {
  CloudFrameSchema,
  Codec,
  DeviceFrameSchema,
  EndReason,
  ErrorCode,
  KvFormat,
  RefineMethod,
  type CloudFrame,
  type DeviceFrame,
} from "../gen/pdd/v1/pdd_pb.js";

const fp = (seed: number) => Uint8Array.from({ length: 32 }, (_, i) => (i * 31 + seed) & 0xff);

const model = (name: string, seed: number) => ({
  name,
  modelFingerprint: fp(seed),
  tokenizerFingerprint: fp(seed + 1),
  vocabSize: 32000,
  contextLength: 4096,
  architecture: "llama",
});

export function deviceSamples(): DeviceFrame[] {
  const bodies: DeviceFrame["body"][] = [
    {
      case: "hello",
      value: {
        versions: [{ major: 1, minor: 0 }],
        codecs: [Codec.PROTO, Codec.MSGPACK],
        capabilities: { kvChunks: true, kvFormats: [KvFormat.LLAMA_SEQ_STATE], refinement: true, tokenIds: false },
        deviceModel: model("device-tiny", 7),
        authToken: "secret-token",
        clientName: "pdd-device/0.1.0",
        maxFrameBytes: 4 << 20,
      } as never,
    },
    {
      case: "prefillRequest",
      value: {
        requestId: 1,
        prompt: { case: "text", value: "Hello, wörld — 你好 🌍" },
        sampling: { temperature: 0.75, topK: 40, topP: 0.9375, seed: 12345678901234n },
        maxTokens: 256,
        cloudTokenBudget: 24,
        kv: { format: KvFormat.LLAMA_SEQ_STATE, maxChunkBytes: 262144, initialCreditBytes: 1048576n },
        refine: { method: RefineMethod.SURPRISAL_DROP, targetRatio: 0.5, minKeepTokens: 8, keepTailTokens: 4 },
        priority: 2,
        deadlineMs: 1500,
        targetTpotUs: 40000,
      } as never,
    },
    {
      case: "prefillRequest",
      value: {
        requestId: 2,
        prompt: { case: "tokens", value: { ids: [1, 2, 3, 4294967295] } },
        cloudTokenBudget: 1,
      } as never,
    },
    {
      case: "progress",
      value: {
        requestId: 1,
        prefilledTokens: 100,
        coveredIndex: 3,
        displayedIndex: 2,
        prefillTokensPerS: 812.5,
        decodeTokensPerS: 22.25,
      } as never,
    },
    { case: "takeover", value: { requestId: 1, index: 7 } as never },
    { case: "kvCredit", value: { requestId: 1, bytes: 9007199254740993n } as never },
    { case: "cancel", value: { requestId: 1, code: ErrorCode.CANCELLED, reason: "user pressed stop" } as never },
    { case: "ping", value: { nonce: 18446744073709551615n, sentAtUs: 1764430000000000n } as never },
    { case: "goodbye", value: { code: ErrorCode.UNSPECIFIED, reason: "bye" } as never },
  ];
  return bodies.map((body) => create(DeviceFrameSchema, { body } as never));
}

export function cloudSamples(): CloudFrame[] {
  const bodies: CloudFrame["body"][] = [
    {
      case: "helloAck",
      value: {
        version: { major: 1, minor: 0 },
        codec: Codec.MSGPACK,
        limits: {
          maxFrameBytes: 16 << 20,
          maxPromptTokens: 32768,
          maxConcurrentRequests: 16,
          maxCloudTokenBudget: 512,
          maxKvChunkBytes: 1 << 20,
          idleTimeoutMs: 60000,
          maxRequestDurationMs: 600000,
        },
        cloudModel: model("cloud-big", 9),
        capabilities: { kvChunks: true, kvFormats: [KvFormat.LLAMA_SEQ_STATE], refinement: true, tokenIds: true },
        serverName: "pdd-cloud/0.1.0",
      } as never,
    },
    {
      case: "accepted",
      value: {
        requestId: 1,
        queuePosition: 3,
        promptTokens: 1500,
        cloudTokenBudget: 16,
        kv: { granted: false, refusal: ErrorCode.MODEL_MISMATCH, detail: "fingerprints differ" },
        refine: { granted: true },
        kvFormat: KvFormat.LLAMA_SEQ_STATE,
        kvTotalBytes: 5000000000n,
      } as never,
    },
    {
      case: "firstToken",
      value: {
        requestId: 1,
        token: { id: 450, piece: new Uint8Array([0x48, 0x69]) },
        queueUs: 120,
        prefillUs: 35000,
      } as never,
    },
    {
      case: "tokenBatch",
      value: {
        requestId: 1,
        startIndex: 1,
        tokens: [
          { id: 29871, piece: new Uint8Array([0x20]) },
          { id: 30, piece: new Uint8Array([0xe4, 0xbd]) }, // first two bytes of 你
          { id: 31, piece: new Uint8Array([0xa0]) },
        ],
      } as never,
    },
    {
      case: "kvChunk",
      value: {
        requestId: 1,
        format: KvFormat.LLAMA_SEQ_STATE,
        layerStart: 0,
        layerCount: 0,
        tokenStart: 0,
        tokenCount: 1500,
        offset: 4294967296n,
        totalBytes: 4294967396n,
        data: Uint8Array.from({ length: 100 }, (_, i) => i),
        crc32: 0xdeadbeef,
        imageSha256: fp(3),
      } as never,
    },
    {
      case: "refinedPrompt",
      value: {
        requestId: 1,
        method: RefineMethod.SURPRISAL_DROP,
        kept: [
          { start: 0, end: 10 },
          { start: 20, end: 30 },
        ],
        text: "refined prompt",
        originalTokens: 40,
        keptTokens: 20,
        ratio: 0.5,
      } as never,
    },
    {
      // Since 1.2: the model that scored the prompt, here another than the served one with its tokenizer.
      case: "refinedPrompt",
      value: {
        requestId: 2,
        method: RefineMethod.SURPRISAL_DROP,
        kept: [{ start: 0, end: 3 }],
        text: "ref",
        originalTokens: 6,
        keptTokens: 3,
        ratio: 0.5,
        scorer: { ...model("scorer-1b", 9), tokenizerFingerprint: fp(2) },
      } as never,
    },
    {
      case: "end",
      value: {
        requestId: 1,
        reason: EndReason.TAKEN_OVER,
        tokenCount: 7,
        usage: {
          promptTokens: 1500,
          decodedTokens: 9,
          sentTokens: 9,
          kvBytesSent: 123456n,
          queueUs: 120,
          prefillUs: 35000,
          decodeUs: 90000,
        },
      } as never,
    },
    {
      case: "error",
      value: {
        requestId: 0,
        code: ErrorCode.UNSUPPORTED_VERSION,
        message: "no common major version",
        retryable: false,
        retryAfterMs: 0,
        supportedVersions: [{ major: 1, minor: 0 }],
      } as never,
    },
    { case: "pong", value: { nonce: 5n, pingSentAtUs: 1764430000000000n, receivedAtUs: 1764430000010000n } as never },
    { case: "goodbye", value: { code: ErrorCode.UNAVAILABLE, reason: "draining" } as never },
  ];
  return bodies.map((body) => create(CloudFrameSchema, { body } as never));
}
