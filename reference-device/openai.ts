/** The OpenAI-compatible endpoint (`pdd device serve`): its public surface. The parts are the openai-*.ts files. */
export { serveOpenAi, type OpenAiServer, type RequestLog, type ServeOptions } from "./openai-server.js";
export { FALLBACK_TEMPLATE, type ChatTemplate } from "./openai-template.js";
