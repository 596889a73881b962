/** The trace simulation's timing profiles are the simulated engine's (engine/profiles.ts). */
export { CLOUD_GPU, PHONE, PHONE_NPU, PROFILES, type Profile } from "../../engine/index.js";
