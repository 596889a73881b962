export { DeviceRequestState, type DeviceEvent, type DevicePhase } from "./device-request.js";
export { CloudRequestState, type CloudAction, type CloudPhase, type CloudRequestLimits } from "./cloud-request.js";
