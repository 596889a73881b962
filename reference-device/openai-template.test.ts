/** Chat templates: the model's own (GGUF tokenizer.chat_template, through Jinja), a file, or the documented fallback. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createModel, Engine, ensureDefaultModel, PRESETS } from "../engine/index.js";
import { PdDevice } from "./device.js";
import { serveOpenAi } from "./openai.js";
import { loadChatTemplate } from "./openai-template.js";

const CHATML =
  "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}" +
  "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
const dir = mkdtempSync(join(tmpdir(), "pdd-openai-template-"));
let templated: Engine;
let plain: Engine;

beforeAll(async () => {
  createModel(join(dir, "chatml.gguf"), { ...PRESETS.tiny, chatTemplate: CHATML });
  createModel(join(dir, "tiny.gguf"), { ...PRESETS.tiny, chatTemplate: undefined });
  templated = await Engine.load({ modelPath: join(dir, "chatml.gguf"), threads: 1, sequences: 4 });
  plain = await Engine.load({ modelPath: join(dir, "tiny.gguf"), threads: 1, sequences: 4 });
});
afterAll(async () => {
  await templated.close();
  await plain.close();
  rmSync(dir, { recursive: true, force: true });
});

const chat = [
  { role: "system" as const, content: "Be brief." },
  { role: "user" as const, content: "Hi" },
  { role: "assistant" as const, content: "Hello!" },
  { role: "user" as const, content: "Again" },
];

describe("chat templates", () => {
  it("a model with tokenizer.chat_template is rendered with it, generation prompt added, BOS left to the tokenizer", async () => {
    const t = await loadChatTemplate(templated);
    expect(t.source).toBe("gguf");
    expect(t.render(chat)).toBe(
      "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n" +
        "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nAgain<|im_end|>\n<|im_start|>assistant\n",
    );
  });

  it("the embedded default model (tiny) has ChatML, so it answers through the Jinja path", async () => {
    const embedded = await Engine.load({ modelPath: ensureDefaultModel("tiny"), threads: 1, sequences: 4 });
    try {
      const t = await loadChatTemplate(embedded);
      expect(t.source).toBe("gguf");
      expect(t.render(chat.slice(1, 2))).toBe("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    } finally {
      await embedded.close();
    }
  });

  it("a model without one uses the documented fallback; a template file overrides either", async () => {
    const t = await loadChatTemplate(plain);
    expect(t.source).toBe("fallback");
    expect(t.render(chat)).toBe("system: Be brief.\nuser: Hi\nassistant: Hello!\nuser: Again\nassistant:");
    const file = join(dir, "t.jinja");
    writeFileSync(
      file,
      "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}",
    );
    const f = await loadChatTemplate(plain, file);
    expect(f.source).toBe("file");
    expect(f.render(chat.slice(1, 2))).toBe("[user] Hi\n[assistant] ");
  });

  it("the served chat prompt is the templated text: its tokens are the usage's prompt_tokens", async () => {
    const device = await PdDevice.create({ engine: templated });
    const api = await serveOpenAi(device);
    try {
      const res = await fetch(`${api.url}/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ messages: chat, max_tokens: 3 }),
      });
      const body = (await res.json()) as { usage: { prompt_tokens: number } };
      const rendered = (await loadChatTemplate(templated)).render(chat);
      expect(body.usage.prompt_tokens).toBe(templated.tokenizeTemplated(rendered).length);
      const described = (await (await fetch(`${api.url}/models/pdd-device`)).json()) as {
        pdd: { chat_template: string };
      };
      expect(described.pdd.chat_template).toBe("gguf");
    } finally {
      await api.close();
      await device.close();
    }
  });
});
