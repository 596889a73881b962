// Preloaded into a cloud under attack (node --expose-gc --import): on SIGUSR2 it
// collects garbage fully and writes one JSON line to stderr with what the process
// still holds. RSS alone cannot tell a leak from memory the allocator keeps for
// reuse (glibc and V8 both keep freed pages); what survives a full collection can.
process.on("SIGUSR2", () => {
  globalThis.gc?.();
  globalThis.gc?.(); // a second pass frees what the first one's finalizers released
  const m = process.memoryUsage();
  process.stderr.write(
    `${JSON.stringify({ heapProbe: { heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers, rss: m.rss } })}\n`,
  );
});
