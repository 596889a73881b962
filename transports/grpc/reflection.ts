/**
 * gRPC server reflection (`grpc.reflection.v1.ServerReflection`, and
 * `v1alpha`, which grpcurl and older tools still ask first), so `grpcurl
 * HOST:4101 list`, `grpcurl ... describe` and `buf curl` work without the
 * .proto (issue 16). It serves the files this server implements: pdd.v1, the
 * health service and reflection itself, as FileDescriptorProto bytes.
 */
import {
  create,
  createRegistry,
  type DescFile,
  type DescService,
  fromBinary,
  toBinary,
  type MessageInitShape,
} from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { PdDeviceService } from "../../proto/index.js";
import { Health } from "./gen/grpc/health/v1/health_pb.js";
import {
  ServerReflection,
  type ServerReflectionRequest,
  ServerReflectionRequestSchema,
  ServerReflectionResponseSchema,
} from "./gen/grpc/reflection/v1/reflection_pb.js";
import * as alpha from "./gen/grpc/reflection/v1alpha/reflection_pb.js";

/** Every service this server answers, in the order `list` shows them. */
export const REFLECTED_SERVICES: readonly DescService[] = [
  PdDeviceService,
  Health,
  ServerReflection,
  alpha.ServerReflection,
];

const GRPC_NOT_FOUND = 5;
const GRPC_INVALID_ARGUMENT = 3;

type Response = MessageInitShape<typeof ServerReflectionResponseSchema>;

/** The file descriptors and symbols of `services`, answering reflection requests. */
export class Reflector {
  private readonly files = new Map<string, DescFile>();
  private readonly registry;

  constructor(private readonly services: readonly DescService[] = REFLECTED_SERVICES) {
    for (const s of services) this.addFile(s.file);
    this.registry = createRegistry(...this.files.values());
  }

  private addFile(file: DescFile): void {
    if (this.files.has(file.proto.name)) return;
    this.files.set(file.proto.name, file);
    for (const dep of file.dependencies) this.addFile(dep);
  }

  answer(req: ServerReflectionRequest): Response {
    const base = { validHost: req.host, originalRequest: req };
    const q = req.messageRequest;
    switch (q.case) {
      case "listServices":
        return { ...base, messageResponse: { case: "listServicesResponse", value: this.list() } };
      case "fileByFilename":
        return this.withFile(base, this.files.get(q.value), `no file ${q.value}`);
      case "fileContainingSymbol":
        return this.withFile(base, this.fileOf(q.value), `no symbol ${q.value}`);
      case "fileContainingExtension":
        // pdd.v1 defines no extensions: every extension request is answered NOT_FOUND.
        return error(base, GRPC_NOT_FOUND, `no extension ${q.value.extensionNumber} of ${q.value.containingType}`);
      case "allExtensionNumbersOfType":
        return this.registry.getMessage(q.value)
          ? {
              ...base,
              messageResponse: {
                case: "allExtensionNumbersResponse",
                value: { baseTypeName: q.value, extensionNumber: [] },
              },
            }
          : error(base, GRPC_NOT_FOUND, `no message type ${q.value}`);
      default:
        return error(base, GRPC_INVALID_ARGUMENT, "no request given");
    }
  }

  private list() {
    return { service: this.services.map((s) => ({ name: s.typeName })) };
  }

  /** The file that declares a type, service, method, field or enum value, by its full name. */
  private fileOf(symbol: string): DescFile | undefined {
    const name = symbol.startsWith(".") ? symbol.slice(1) : symbol;
    const found = this.registry.get(name);
    if (found) return found.file;
    const dot = name.lastIndexOf(".");
    if (dot < 0) return undefined;
    const [parent, member] = [name.slice(0, dot), name.slice(dot + 1)];
    const service = this.services.find((s) => s.typeName === parent);
    if (service?.methods.some((m) => m.name === member)) return service.file;
    const message = this.registry.getMessage(parent);
    if (message?.fields.some((f) => f.name === member)) return message.file;
    return undefined;
  }

  /** A file and every file it imports, each once (grpcurl resolves imports from the same response). */
  private withFile(base: Pick<Response, "validHost" | "originalRequest">, file: DescFile | undefined, why: string) {
    if (!file) return error(base, GRPC_NOT_FOUND, why);
    const closure: DescFile[] = [];
    const visit = (f: DescFile) => {
      if (closure.includes(f)) return;
      closure.push(f);
      f.dependencies.forEach(visit);
    };
    visit(file);
    const bytes = closure.map((f) => toBinary(FileDescriptorProtoSchema, f.proto));
    return {
      ...base,
      messageResponse: { case: "fileDescriptorResponse" as const, value: { fileDescriptorProto: bytes } },
    };
  }
}

function error(base: Pick<Response, "validHost" | "originalRequest">, errorCode: number, errorMessage: string) {
  return { ...base, messageResponse: { case: "errorResponse" as const, value: { errorCode, errorMessage } } };
}

/** `grpc.reflection.v1.ServerReflection`: one answer per request, in order, on one stream. */
export function reflectionService(reflector: Reflector): ServiceImpl<typeof ServerReflection> {
  return {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) yield reflector.answer(req);
    },
  };
}

/**
 * `grpc.reflection.v1alpha.ServerReflection`: the same messages under the old
 * package name. They are wire-identical, so each request and answer crosses
 * between the two by its bytes.
 */
export function reflectionServiceV1alpha(reflector: Reflector): ServiceImpl<typeof alpha.ServerReflection> {
  return {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) {
        const asV1 = fromBinary(ServerReflectionRequestSchema, toBinary(alpha.ServerReflectionRequestSchema, req));
        const answer = toBinary(
          ServerReflectionResponseSchema,
          create(ServerReflectionResponseSchema, reflector.answer(asV1)),
        );
        yield fromBinary(alpha.ServerReflectionResponseSchema, answer);
      }
    },
  };
}
