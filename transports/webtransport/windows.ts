/**
 * Flow-control windows. With the library's 16 KiB defaults a transfer stalls
 * at exactly 16,384 bytes (measured); KV images are tens of MiB, so streams
 * start at 16 MiB and sessions at 64 MiB, with auto-tuning up to 64/256 MiB.
 * @internal
 */
export const WT_WINDOWS = {
  initialStreamFlowControlWindow: 16 << 20,
  streamShouldAutoTuneReceiveWindow: true,
  streamFlowControlWindowSizeLimit: 64 << 20,
  initialSessionFlowControlWindow: 64 << 20,
  sessionShouldAutoTuneReceiveWindow: true,
  sessionFlowControlWindowSizeLimit: 256 << 20,
} as const;
