// Translates text through the gateway's REST face with the TypeScript types that
// `buf generate --template examples/buf.gen.yaml` writes into examples/node/gen/ (protoc-gen-es):
// the request is built and type-checked from the proto, the JSON answer parsed into a typed
// message.
//
//   examples/node/node_modules/.bin/tsc -p examples/node
//   node examples/node/dist/translate_rest.js [--to fr] TEXT...
//
// The gateway is $SPEECHMESH (default localhost:8080).

import { create, fromJson, toJson } from "@bufbuild/protobuf";
import {
  TranslateTextRequestSchema,
  TranslateTextResponseSchema,
} from "./gen/speechmesh/translate/v1/translate_pb";

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  let target = "fr";
  const to = args.indexOf("--to");
  if (to >= 0) target = args.splice(to, 2)[1];
  const gateway = (process.env.SPEECHMESH ?? "localhost:8080").replace(/^https?:\/\//, "");

  const request = create(TranslateTextRequestSchema, {
    texts: args.length ? args : ["Hello, how are you?"],
    sourceLanguageCode: "en",
    targetLanguageCode: target,
    requestId: `ts-${process.pid}`,
  });
  const reply = await fetch(`http://${gateway}/v1/translate:translateText`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(toJson(TranslateTextRequestSchema, request, { useProtoFieldName: true })),
  });
  const body = await reply.json();
  if (!reply.ok) {
    // Errors are google.rpc.Status JSON: {code, message, details}.
    throw new Error(`HTTP ${reply.status}: ${body.message}`);
  }
  // ignoreUnknownFields: fields a newer server adds do not break this client.
  const response = fromJson(TranslateTextResponseSchema, body, { ignoreUnknownFields: true });
  console.log(`${response.requestId}: ${response.translations.length} translation(s) by ${response.model}`);
  response.translations.forEach((translation, index) => {
    console.log(`${request.texts[index]} -> [${target}] ${translation.translatedText}`);
  });
}

main().catch((error: Error) => {
  console.error(`translate_rest: ${error.message}`);
  process.exit(1);
});
