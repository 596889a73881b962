import { defineConfig } from "vitest/config";
import base from "./vitest.config.js";
import { MATRIX_FILES } from "./vitest.matrix.js";

/** `npm run test:matrix`: the binding-matrix conformance runs that `npm test` leaves to CI (vitest.matrix.ts). */
export default defineConfig({ test: { ...base.test, include: MATRIX_FILES, exclude: ["node_modules/**"] } });
