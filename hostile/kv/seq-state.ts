/** Moved to conformance/ (pdd fuzz builds hostile KV images too); re-exported for the hostile suite. */
export * from "../../conformance/kv-seq-state.js";
