/**
 * A local OpenAI-compatible endpoint in front of a PdDevice, so existing apps
 * use P/D-Device unchanged: POST /v1/chat/completions and /v1/completions,
 * with SSE streaming and stream_options.include_usage; GET /v1/models.
 * Each response carries the device's report as `pdd` (an extension field).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { randomUUID } from "node:crypto";
import { z } from "zod";
import type { PdDevice } from "./device.js";
import type { Report } from "./run.js";

const Common = {
  model: z.string().optional(),
  max_tokens: z
    .number()
    .int()
    .min(1)
    .max(1 << 16)
    .optional(),
  max_completion_tokens: z
    .number()
    .int()
    .min(1)
    .max(1 << 16)
    .optional(),
  temperature: z.number().min(0).max(2).optional(),
  top_p: z.number().min(0).max(1).optional(),
  seed: z.number().int().optional(),
  stream: z.boolean().optional(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).optional(),
};
const ChatRequest = z.object({
  ...Common,
  messages: z
    .array(
      z.object({
        role: z.string(),
        content: z.union([z.string(), z.array(z.object({ type: z.string(), text: z.string().optional() }))]).nullable(),
      }),
    )
    .min(1),
});
const CompletionRequest = z.object({ ...Common, prompt: z.union([z.string(), z.array(z.string()).length(1)]) });

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
}

function error(res: ServerResponse, status: number, message: string, type = "invalid_request_error"): void {
  send(res, status, { error: { message, type, param: null, code: null } });
}

async function readJson(req: IncomingMessage, limit = 8 << 20): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > limit) throw new Error(`request body over ${limit} bytes`);
    chunks.push(c as Buffer);
  }
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

/** The prompt for a chat: no template (the spec forbids one in the protocol); roles as plain text. */
export function chatPrompt(messages: z.infer<typeof ChatRequest>["messages"]): string {
  const text = (c: (typeof messages)[number]["content"]) =>
    typeof c === "string" ? c : (c ?? []).map((p) => p.text ?? "").join("");
  return `${messages.map((m) => `${m.role}: ${text(m.content)}`).join("\n")}\nassistant:`;
}

export interface OpenAiServer {
  url: string;
  close(): Promise<void>;
}

export async function serveOpenAi(
  device: PdDevice,
  options: { host?: string; port?: number; modelName?: string } = {},
): Promise<OpenAiServer> {
  const modelName = options.modelName ?? "pdd-device";
  let queue: Promise<unknown> = Promise.resolve();
  const server: Server = createServer((req, res) => {
    void (async () => {
      const path = (req.url ?? "/").split("?")[0];
      if (req.method === "GET" && path === "/v1/models") {
        return send(res, 200, {
          object: "list",
          data: [{ id: modelName, object: "model", created: 0, owned_by: "pd-device" }],
        });
      }
      const chat = path === "/v1/chat/completions";
      if (req.method !== "POST" || (!chat && path !== "/v1/completions"))
        return error(res, 404, `no route for ${req.method} ${path}`, "not_found_error");
      let body: unknown;
      try {
        body = await readJson(req);
      } catch (e) {
        return error(res, 400, `body is not JSON: ${(e as Error).message}`);
      }
      const parsed = (chat ? ChatRequest : CompletionRequest).safeParse(body);
      if (!parsed.success) {
        const i = parsed.error.issues[0]!;
        return error(res, 400, `${i.path.join(".") || "body"}: ${i.message}`);
      }
      const r = parsed.data as z.infer<typeof ChatRequest> & z.infer<typeof CompletionRequest>;
      const prompt = chat ? chatPrompt(r.messages) : Array.isArray(r.prompt) ? r.prompt[0]! : r.prompt;
      const maxTokens = r.max_completion_tokens ?? r.max_tokens ?? 256;
      const id = `${chat ? "chatcmpl" : "cmpl"}-${randomUUID()}`;
      const created = Math.floor(Date.now() / 1000);
      const object = chat ? "chat.completion" : "text_completion";
      const sampling = r.temperature ? { temperature: r.temperature, topP: r.top_p, seed: r.seed } : undefined;
      const usage = (rep: Report, promptTokens: number) => ({
        prompt_tokens: promptTokens,
        completion_tokens: rep.cloudTokens + rep.deviceTokens,
        total_tokens: promptTokens + rep.cloudTokens + rep.deviceTokens,
      });
      const promptTokens = device.engine.tokenize(prompt).length;
      const finish = (rep: Report) => (rep.cloudTokens + rep.deviceTokens >= maxTokens ? "length" : "stop");
      const pdd = (rep: Report) => {
        const { cloudTokenIds: _c, deviceTokenIds: _d, text: _t, ...rest } = rep;
        return rest;
      };

      // One answer at a time per device; requests wait their turn.
      const run = queue.then(async () => {
        if (!r.stream) {
          const rep = await device.generate(prompt, { maxTokens, sampling });
          const choice = chat
            ? {
                index: 0,
                message: { role: "assistant", content: rep.text },
                finish_reason: finish(rep),
                logprobs: null,
              }
            : { index: 0, text: rep.text, finish_reason: finish(rep), logprobs: null };
          return send(res, 200, {
            id,
            object,
            created,
            model: modelName,
            choices: [choice],
            usage: usage(rep, promptTokens),
            pdd: pdd(rep),
          });
        }
        res.writeHead(200, {
          "content-type": "text/event-stream",
          "cache-control": "no-cache",
          connection: "keep-alive",
        });
        const chunkObject = chat ? "chat.completion.chunk" : "text_completion";
        const event = (data: unknown) => res.write(`data: ${JSON.stringify(data)}\n\n`);
        const delta = (text: string, first: boolean) =>
          chat
            ? {
                index: 0,
                delta: first ? { role: "assistant", content: text } : { content: text },
                finish_reason: null,
                logprobs: null,
              }
            : { index: 0, text, finish_reason: null, logprobs: null };
        let first = true;
        const rep = await device.generate(prompt, {
          maxTokens,
          sampling,
          onText: (text) => {
            event({ id, object: chunkObject, created, model: modelName, choices: [delta(text, first)] });
            first = false;
          },
        });
        const last = chat
          ? { index: 0, delta: {}, finish_reason: finish(rep), logprobs: null }
          : { index: 0, text: "", finish_reason: finish(rep), logprobs: null };
        event({ id, object: chunkObject, created, model: modelName, choices: [last], pdd: pdd(rep) });
        if (r.stream_options?.include_usage)
          event({ id, object: chunkObject, created, model: modelName, choices: [], usage: usage(rep, promptTokens) });
        res.end("data: [DONE]\n\n");
      });
      queue = run.catch(() => undefined);
      try {
        await run;
      } catch (e) {
        if (!res.headersSent) error(res, 500, (e as Error).message, "server_error");
        else res.end();
      }
    })();
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => resolve()));
  const a = server.address();
  const port = typeof a === "object" && a ? a.port : 0;
  return {
    url: `http://${options.host ?? "127.0.0.1"}:${port}/v1`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
