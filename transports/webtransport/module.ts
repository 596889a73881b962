/**
 * Loads @fails-components/webtransport once. On import it tries the optional
 * native HTTP/3 module and, when that is absent (the usual case: it builds
 * from GitHub), prints a warning to the console; we load it with those two
 * messages filtered out and report `http3Available` instead.
 * @internal
 */
type WtModule = typeof import("@fails-components/webtransport");

let loading: Promise<{ wt: WtModule; http3Available: boolean }> | undefined;

export function loadWebTransport(): Promise<{ wt: WtModule; http3Available: boolean }> {
  loading ??= (async () => {
    const { error, log } = console;
    const quiet =
      (orig: (...a: unknown[]) => void) =>
      (...args: unknown[]) => {
        const text = args.map(String).join(" ");
        if (/quiche|http3/i.test(text)) return;
        orig(...args);
      };
    console.error = quiet(error);
    console.log = quiet(log);
    try {
      const wt = await import("@fails-components/webtransport");
      let http3Available = false;
      await Promise.race([
        wt.quicheLoaded.then(() => (http3Available = true)).catch(() => undefined),
        new Promise((r) => setTimeout(r, 200)),
      ]);
      // quicheLoaded resolves (to undefined) even when the import failed; the
      // HTTP/3 classes are only usable when the native module exists.
      try {
        await import("@fails-components/webtransport-transport-http3-quiche" as string);
      } catch {
        http3Available = false;
      }
      return { wt, http3Available };
    } finally {
      console.error = error;
      console.log = log;
    }
  })();
  return loading;
}
