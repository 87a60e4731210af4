#!/usr/bin/env node
// Streams a WAV file to speechmesh's StreamingRecognize (bidirectional gRPC) and prints speech
// events, interim hypotheses and final results as they arrive.
//
//   node examples/node/recognize_stream.js FILE.wav [--target HOST:PORT] [--fast] [--json]
//
// --target  the gateway or the ASR service (default: $SPEECHMESH, else localhost:8080)
// --fast    send the audio as fast as the connection takes it (default: in real time, as a
//           microphone would, in 100 ms chunks)
// --json    print each response as one JSON line instead of text
//
// The .proto files are loaded at run time with @grpc/proto-loader from the repository's
// protos/ and third_party/googleapis/ (no generated code). The WAV file goes up as it is:
// the first chunk carries its header, from which the service reads the sample rate.

"use strict";

const fs = require("node:fs");
const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const ROOT = path.resolve(__dirname, "..", "..");
const CHUNK_SECONDS = 0.1;

function parseArgs(argv) {
  const options = { file: null, target: process.env.SPEECHMESH || "localhost:8080", fast: false, json: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--target") options.target = argv[++i];
    else if (arg === "--fast") options.fast = true;
    else if (arg === "--json") options.json = true;
    else if (arg === "-h" || arg === "--help") options.help = true;
    else if (!options.file) options.file = arg;
    else throw new Error(`unexpected argument ${arg}`);
  }
  // Accept what curl users type too: http://host:port.
  options.target = options.target.replace(/^https?:\/\//, "").replace(/\/+$/, "");
  return options;
}

function loadAsr() {
  const definition = protoLoader.loadSync("speechmesh/asr/v1/asr.proto", {
    includeDirs: [path.join(ROOT, "protos"), path.join(ROOT, "third_party", "googleapis")],
    keepCase: true, // proto field names, as the REST face prints them
    longs: String,
    enums: String,
    defaults: false,
    oneofs: true, // response.streaming_response says which field is set
  });
  return grpc.loadPackageDefinition(definition).speechmesh.asr.v1;
}

/** Bytes of audio per second of a WAV file, from its "fmt " chunk. */
function wavBytesPerSecond(data) {
  if (data.toString("ascii", 0, 4) !== "RIFF" || data.toString("ascii", 8, 12) !== "WAVE") {
    throw new Error("not a WAV file (RIFF/WAVE header expected); convert it first, e.g. with ffmpeg -i IN -ar 16000 -ac 1 OUT.wav");
  }
  for (let offset = 12; offset + 8 <= data.length; ) {
    const id = data.toString("ascii", offset, offset + 4);
    const size = data.readUInt32LE(offset + 4);
    if (id === "fmt ") return data.readUInt32LE(offset + 16); // byte rate
    offset += 8 + size + (size % 2);
  }
  throw new Error("WAV file without a fmt chunk");
}

const seconds = (duration) => (duration ? Number(duration.seconds || 0) + (duration.nanos || 0) / 1e9 : 0);

function describe(response, elapsed) {
  const at = elapsed.toFixed(2).padStart(5);
  if (response.streaming_response === "speech_event") {
    const event = response.speech_event;
    const kind = { TYPE_SPEECH_BEGIN: "begins", TYPE_SPEECH_END: "ends" }[event.type] || "ended (single utterance)";
    return `${at} speech ${kind} at ${seconds(event.offset).toFixed(3)} s`;
  }
  const result = response.result;
  if (result.is_final) return `${at} FINAL    ${result.transcript}`;
  return `${at} interim  [${result.stable_transcript || ""}] ${result.transcript}`;
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  if (options.help || !options.file) {
    console.error("usage: node examples/node/recognize_stream.js FILE.wav [--target HOST:PORT] [--fast] [--json]");
    process.exit(options.help ? 0 : 2);
  }
  const audio = fs.readFileSync(options.file);
  const chunkBytes = Math.max(1024, Math.round(wavBytesPerSecond(audio) * CHUNK_SECONDS));

  const asr = loadAsr();
  const client = new asr.AsrService(options.target, grpc.credentials.createInsecure());
  const started = process.hrtime.bigint();
  const elapsed = () => Number(process.hrtime.bigint() - started) / 1e9;
  const call = client.StreamingRecognize();

  let failed = false;
  const finished = new Promise((resolve, reject) => {
    let finals = 0;
    call.on("data", (response) => {
      if (response.result && response.result.is_final) finals++;
      console.log(options.json ? JSON.stringify(response) : describe(response, elapsed()));
    });
    call.on("error", (error) => {
      failed = true;
      reject(error);
    });
    call.on("end", () => resolve(finals));
  });
  finished.catch(() => {}); // awaited below, after the audio is sent

  // The first message carries the configuration; without audio_format the service reads the
  // WAV header at the start of the audio.
  call.write({
    streaming_config: {
      request_id: `node-${process.pid}`,
      interim_results: true,
      enable_voice_activity_events: true,
      config: { enable_word_time_offsets: true },
    },
  });
  for (let offset = 0; offset < audio.length && !failed; offset += chunkBytes) {
    const ok = call.write({ audio: audio.subarray(offset, offset + chunkBytes) });
    if (!options.fast) await new Promise((resolve) => setTimeout(resolve, CHUNK_SECONDS * 1000));
    else if (!ok) await new Promise((resolve) => call.once("drain", resolve));
  }
  call.end(); // half-close: the service finalizes what is pending and ends the call

  const finals = await finished;
  if (!options.json) console.log(`${elapsed().toFixed(2).padStart(5)} done: ${finals} final result(s)`);
  client.close();
}

main().catch((error) => {
  // A gRPC error carries its code name and message, e.g. "3 INVALID_ARGUMENT: ...".
  console.error(`recognize_stream: ${error.message}`);
  if (error.code === grpc.status.UNAVAILABLE) {
    console.error("is the gateway running? `make run` (or `speechmesh up --offline`) starts it");
  }
  process.exit(1);
});
