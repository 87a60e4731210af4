"use strict";
// The speechmesh demo page. Every call goes to the gateway's REST routes through the server
// that served this page (same origin); errors come back as google.rpc.Status JSON. The live
// microphone is a WebSocket to the gateway's realtime endpoint, through the same server.

const $ = (id) => document.getElementById(id);
const CODES = [
  "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
  "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
  "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
];

// -- talking to the gateway -----------------------------------------------------------------

class GatewayError extends Error {
  constructor(httpStatus, status) {
    super(status.message || `HTTP ${httpStatus}`);
    this.httpStatus = httpStatus;
    this.code = status.code;
    this.violations = [];
    for (const detail of status.details || []) {
      this.violations.push(...(detail.field_violations || detail.fieldViolations || []));
    }
  }
}

function credentials(headers = {}) {
  const key = $("api-key").value.trim();
  localStorage.setItem("speechmesh-api-key", key);
  return key ? { ...headers, Authorization: `Bearer ${key}` } : headers;
}

async function errorOf(reply) {
  const text = await reply.text();
  let status;
  try {
    status = JSON.parse(text);
  } catch {
    status = null;
  }
  if (!status || typeof status !== "object") status = { message: text.trim() || reply.statusText };
  return new GatewayError(reply.status, status);
}

// fetch() that throws a GatewayError unless the answer is 2xx. `json` posts a JSON body;
// `body` posts raw bytes with Content-Type `type`; `query` adds non-empty parameters.
async function call(path, { method = "GET", json, body, type, query } = {}) {
  let url = path;
  if (query) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value !== "" && value !== undefined && value !== null && value !== false) {
        params.append(key, value);
      }
    }
    if ([...params].length) url += "?" + params;
  }
  const init = { method, headers: credentials() };
  if (json !== undefined) {
    Object.assign(init, { method: "POST", body: JSON.stringify(json) });
    init.headers["Content-Type"] = "application/json";
  } else if (body !== undefined) {
    Object.assign(init, { method: "POST", body });
    init.headers["Content-Type"] = type || "application/octet-stream";
  }
  const reply = await fetch(url, init);
  if (!reply.ok) throw await errorOf(reply);
  return reply;
}

// Posts the file chosen in the input `inputId` as the HTTP body, with its own Content-Type.
function upload(path, inputId, query) {
  const audio = file(inputId);
  return call(path, { body: audio, type: audio.type, query });
}

// -- showing things -------------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  node.append(...children);
  return node;
}

const text = (value) => el("div", { className: "text", textContent: value || "(nothing)" });
const meta = (value) => el("div", { className: "meta", textContent: value });

function setStatus(status, state, message) {
  status.className = `status ${state}`;
  status.textContent = message;
}

function showError(status, error) {
  status.className = "status error";
  if (!(error instanceof GatewayError)) {
    status.textContent = String((error && error.message) || error);
    return;
  }
  const name = CODES[error.code] || "";
  status.replaceChildren(el("div", { textContent: `${error.httpStatus} ${name}: ${error.message}` }));
  // Field violations, unless the message already is the only one.
  const lines = error.violations.map((v) => `${v.field}: ${v.description}`);
  if (lines.length && !(lines.length === 1 && lines[0] === error.message)) {
    status.append(el("ul", {}, ...lines.map((line) => el("li", { textContent: line }))));
  }
}

const audioUrls = new Map();

async function showAudio(output, reply, name, details = "") {
  const blob = await reply.blob();
  if (audioUrls.has(output)) URL.revokeObjectURL(audioUrls.get(output));
  const url = URL.createObjectURL(blob);
  audioUrls.set(output, url);
  const extension = (blob.type.split("/")[1] || "bin").split(";")[0].replace("mpeg", "mp3");
  output.replaceChildren(
    el("audio", { controls: true, src: url }),
    meta(`${details}${blob.type}, ${(blob.size / 1024).toFixed(1)} kB · `),
  );
  output.lastChild.append(el("a", { href: url, download: `${name}.${extension}`, textContent: "download" }));
}

// Runs `work(output)` when the button is clicked: the status line above the output says busy,
// done (with the time taken) or the error; output.dataset.state says the same for tests.
function action(buttonId, outputId, work) {
  const button = $(buttonId);
  const output = $(outputId);
  const status = output.previousElementSibling;
  button.addEventListener("click", async () => {
    button.disabled = true;
    output.dataset.state = "busy";
    output.replaceChildren();
    setStatus(status, "busy", "Working…");
    const started = performance.now();
    try {
      const note = await work(output);
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      setStatus(status, "done", `${note || "Done"} in ${seconds} s`);
      output.dataset.state = "done";
    } catch (error) {
      showError(status, error);
      output.dataset.state = "error";
    } finally {
      button.disabled = false;
    }
  });
}

function file(inputId) {
  const chosen = $(inputId).files[0];
  if (!chosen) throw new Error("Choose an audio file first.");
  return chosen;
}

// -- what the gateway serves ----------------------------------------------------------------

let languageNames = null;
try {
  languageNames = new Intl.DisplayNames(["en"], { type: "language" });
} catch {
  languageNames = null;
}

function languageLabel(code) {
  let name = "";
  try {
    name = languageNames ? languageNames.of(code) : "";
  } catch {
    name = "";
  }
  return name && name !== code ? `${name} (${code})` : code;
}

// Fills a <select> with [value, label] pairs, keeping the current choice when it is still there.
function fill(select, options, preferred = []) {
  const current = select.options.length ? select.value : undefined;
  select.replaceChildren(...options.map(([value, label]) => el("option", { value, textContent: label })));
  const values = options.map(([value]) => value);
  const pick = [current, ...preferred].find((value) => values.includes(value));
  if (pick !== undefined) select.value = pick;
}

// `detect` (an empty code) is offered where the select asks for it and the models can detect.
function fillLanguages(className, codes, preferred, detect = true) {
  const sorted = [...new Set(codes)].sort();
  for (const select of document.querySelectorAll(`select.${className}`)) {
    const options = sorted.map((code) => [code, languageLabel(code)]);
    if (select.dataset.auto && detect) options.unshift(["", "detect"]);
    fill(select, options, preferred);
  }
}

const catalog = { tts: [], voices: [] };

async function fetchJson(path) {
  try {
    return await (await call(path)).json();
  } catch (error) {
    return { error };
  }
}

function badge(name, reply) {
  const models = reply.models || [];
  const up = !reply.error && models.some((m) => m.state === "MODEL_STATE_READY");
  const title = reply.error ? reply.error.message : models.map((m) => m.name).join(", ");
  return el("span", { className: up ? "up" : "down", textContent: name, title });
}

async function loadCatalog() {
  const config = await (await fetch("/ui/config")).json();
  $("gateway").textContent = `gateway ${config.gateway}`;
  const [asr, translate, languages, tts] = await Promise.all([
    fetchJson("/v1/asr/models"),
    fetchJson("/v1/translate/models"),
    fetchJson("/v1/translate/languages"),
    fetchJson("/v1/tts/models"),
  ]);
  $("models").replaceChildren(badge("asr", asr), badge("translate", translate), badge("tts", tts));
  // Which models are noise and which are real, by name (`make run` serves real ASR and TTS
  // models beside tiny random ones): "tiny-csm (tts, cloning)", "vits-en-joe (tts)".
  const named = (random) => Object.entries({ asr, translate, tts }).flatMap(([service, reply]) =>
    (reply.models || []).filter((m) => !m.random_weights === !random).map((m) =>
      `${m.name} (${service}${m.supports_voice_cloning && !m.default ? ", cloning" : ""})`));
  const [noise, real] = [named(true), named(false)];
  $("noise-models").textContent = noise.join(", ");
  $("real-models").textContent = real.length ? ` Real weights: ${real.join(", ")}.` : "";
  $("noise").hidden = !noise.length;

  const langs = languages.models || [];
  const pick = (field) => langs.flatMap((m) => m[field] || []);
  const detects = (translate.models || []).some((m) => m.supports_language_detection);
  fillLanguages("lang-text-in", pick("text_input_language_codes"), ["en"], detects);
  fillLanguages("lang-text-out", pick("text_output_language_codes"), ["fr", "de", "es"]);
  fillLanguages("lang-speech-in", pick("speech_input_language_codes"), ["en"]);
  fillLanguages("lang-speech-out", pick("speech_output_language_codes"), ["fr", "de", "es"]);
  fillLanguages("lang-asr", (asr.models || []).flatMap((m) => m.language_codes || []), [""]);
  const translateVoices = langs.flatMap((m) => m.voices || []);
  for (const select of document.querySelectorAll("select.translate-voices")) {
    fill(select, [["", "default"], ...translateVoices.map((v) => [v.name, v.display_name || v.name])]);
  }
  catalog.tts = tts.models || [];
  const ttsDefault = catalog.tts.find((m) => m.default) || catalog.tts[0];
  const ttsLanguages = ttsDefault ? ttsDefault.language_codes : [];
  fill($("tts-language"), [["", "the voice's"], ...ttsLanguages.map((c) => [c, languageLabel(c)])]);
  await loadVoices();
}

async function loadVoices(select) {
  const reply = await fetchJson("/v1/voices?page_size=1000");
  catalog.voices = reply.voices || [];
  const stored = catalog.voices.map((v) => [v.name, v.display_name ? `${v.display_name} (${v.name})` : v.name]);
  fill($("clone-voice"), stored, [select]);
  const options = [["", "model default"]];
  for (const [value, label] of stored) options.push([`voice:${value}`, `stored: ${label}`]);
  for (const model of catalog.tts) {
    for (const preset of model.preset_voices || []) {
      options.push([`preset:${preset.name}`, `${preset.display_name || preset.name} (${model.name})`]);
    }
  }
  fill($("tts-voice"), options, [select && `voice:${select}`]);
}

// -- the tasks --------------------------------------------------------------------------------

action("t2t-run", "t2t-output", async (output) => {
  const request = { texts: [$("t2t-text").value], target_language_code: $("t2t-target").value };
  if ($("t2t-source").value) request.source_language_code = $("t2t-source").value;
  const reply = await (await call("/v1/translate:translateText", { json: request })).json();
  const [first] = reply.translations;
  output.replaceChildren(
    text(first.translated_text),
    meta(`${first.source_language_code} → ${request.target_language_code} · ${reply.model}`),
  );
  return "Translated";
});

function synthesisConfig() {
  const config = {};
  const [kind, ...rest] = $("tts-voice").value.split(":");
  if (kind === "voice") config.voice = rest.join(":");
  if (kind === "preset") config.preset_voice = rest.join(":");
  if ($("tts-language").value) config.language_code = $("tts-language").value;
  const speed = Number($("tts-speed").value);
  if (speed && speed !== 1) config.speed = speed;
  return config;
}

action("tts-run", "tts-output", async (output) => {
  const request = { text: $("t2s-text").value, config: synthesisConfig() };
  await showAudio(output, await call("/v1/tts:synthesizeAudio", { json: request }), "speech");
  return "Spoken";
});

action("t2s-run", "t2s-output", async (output) => {
  const config = { target_language_code: $("t2s-target").value };
  if ($("t2s-source").value) config.source_language_code = $("t2s-source").value;
  if ($("t2s-voice").value) config.voice = $("t2s-voice").value;
  const request = { text: $("t2s-text").value, config };
  const reply = await call("/v1/translate:translateTextToSpeechAudio", { json: request });
  await showAudio(output, reply, `speech-${config.target_language_code}`);
  return "Translated and spoken";
});

function segmentList(segments, line) {
  const list = el("ol");
  for (const segment of segments || []) list.append(el("li", { textContent: line(segment) }));
  return list;
}

action("s2t-run", "s2t-output", async (output) => {
  const query = {
    "config.language_code": $("s2t-language").value,
    "config.enable_word_time_offsets": $("s2t-words").checked,
  };
  const reply = await (await upload("/v1/asr:recognizeFile", "s2t-file", query)).json();
  output.replaceChildren(
    text(reply.transcript),
    meta(`${reply.language_code} · ${reply.audio_duration} of audio · ${reply.model}`),
    segmentList(reply.segments, (s) => {
      const words = (s.words || []).map((w) => `${w.word}@${w.start_offset}`).join(" ");
      return `${s.start_offset}–${s.end_offset} ${s.text}${words ? `  [${words}]` : ""}`;
    }),
  );
  return "Transcribed";
});

action("s2tt-run", "s2tt-output", async (output) => {
  const query = {
    "config.source_language_code": $("s2tt-from").value,
    "config.target_language_code": $("s2tt-target").value,
    "config.enable_source_transcript": $("s2tt-source").checked,
  };
  const reply = await (await upload("/v1/translate:translateSpeechFile", "s2t-file", query)).json();
  const parts = [text(reply.translated_text)];
  if (reply.source_transcript) parts.push(meta(`source: ${reply.source_transcript}`));
  parts.push(meta(`${reply.source_language_code || "?"} → ${reply.target_language_code} · ${reply.model}`));
  parts.push(segmentList(reply.segments, (s) => `${s.start_offset}–${s.end_offset} ${s.translated_text}`));
  output.replaceChildren(...parts);
  return "Translated";
});

action("s2s-run", "s2s-output", async (output) => {
  const query = {
    "config.target_language_code": $("s2s-target").value,
    "config.voice": $("s2s-voice").value,
  };
  const reply = await upload("/v1/translate:translateSpeechAudio", "s2s-file", query);
  await showAudio(output, reply, `translated-${query["config.target_language_code"]}`);
  return "Translated";
});

// -- voice cloning ----------------------------------------------------------------------------

action("clone-run", "clone-output", async (output) => {
  const query = {
    voice_id: $("clone-id").value.trim(),
    "voice.transcript": $("clone-transcript").value.trim(),
    "voice.display_name": $("clone-name").value.trim(),
  };
  const voice = await (await upload("/v1/voices:upload", "clone-file", query)).json();
  await loadVoices(voice.name);
  output.replaceChildren(
    text(`${voice.name}: “${voice.transcript}”`),
    meta(`${voice.engine} · ${voice.language_code} · ${voice.reference_audio_duration} of reference · ${voice.model}`),
  );
  return "Created";
});

action("clone-speak", "clone-speak-output", async (output) => {
  const voice = $("clone-voice").value;
  if (!voice) throw new Error("Create a voice first.");
  const request = { text: $("clone-say").value, config: { voice } };
  await showAudio(output, await call("/v1/tts:synthesizeAudio", { json: request }), voice.split("/")[1], `${voice} · `);
  return "Spoken";
});

action("clone-delete", "clone-speak-output", async (output) => {
  const voice = $("clone-voice").value;
  if (!voice) throw new Error("No stored voice to delete.");
  await call(`/v1/${voice}`, { method: "DELETE" });
  await loadVoices();
  output.replaceChildren(text(`${voice} deleted`));
  return "Deleted";
});

// -- the live microphone -----------------------------------------------------------------------
// A WebSocket to the gateway's realtime transcription endpoint, `/v1/realtime` (OpenAI's
// Realtime transcription events), opened on this page's own server, which pipes it to the
// gateway unchanged. The microphone goes up as base64 16-bit PCM at 24 kHz in
// `input_audio_buffer.append` events; deltas are shown as interim text and each completed
// transcript as a final line. Stop sends `input_audio_buffer.commit` so the last words complete,
// then closes once the last turn has come back.

const REALTIME_RATE = 24000;
// After Stop, the socket closes once no turn is open and nothing has come for this long (ms).
const FINISH_QUIET_MS = 1000;
// ... or after this long (ms), whatever is still open.
const FINISH_MAX_MS = 30000;

// ws(s)://this page's host/v1/realtime; a WebSocket cannot carry headers, so the API key goes
// in the `api_key` query parameter (this page's server sends it on as `Authorization`).
function realtimeUrl() {
  const url = new URL("/v1/realtime", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  const key = $("api-key").value.trim();
  localStorage.setItem("speechmesh-api-key", key);
  if (key) url.searchParams.set("api_key", key);
  return url.href;
}

function base64(buffer) {
  const bytes = new Uint8Array(buffer);
  let binary = "";
  for (let at = 0; at < bytes.length; at += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(at, at + 0x8000));
  }
  return btoa(binary);
}

// An `error` event as an Error: "code: message (param)".
function realtimeError(event) {
  const error = event.error || {};
  const param = error.param ? ` (${error.param})` : "";
  return new Error(`${error.code || error.type || "error"}: ${error.message || "no message"}${param}`);
}

// Why a socket closed before it opened: the browser does not say (the handshake's HTTP status
// is hidden), so a REST call with the same key is asked; its error is the likely reason.
async function refusal() {
  try {
    await call("/v1/asr/models");
  } catch (error) {
    return error;
  }
  return new Error(
    "The realtime endpoint (/v1/realtime) refused the connection: the gateway may have no " +
    "realtime route, or the ASR service may not be ready.");
}

const REALTIME_EVENTS = {
  "session.created": "connected",
  "session.updated": "listening",
  "input_audio_buffer.speech_started": "speech",
  "input_audio_buffer.speech_stopped": "pause",
  "input_audio_buffer.committed": "end of turn",
  "conversation.item.input_audio_transcription.delta": "interim text",
  "conversation.item.input_audio_transcription.completed": "final transcript",
};

// Shows the events of `output`: interim text in an italic line at the bottom, finals above it.
// `target`: a language to translate each completed turn into (a text translation call).
function liveRenderer(output, target) {
  const interim = el("p", { className: "interim" });
  output.replaceChildren(interim);
  const translations = [];
  let heard = "";
  const render = (event) => {
    if (event.type === "conversation.item.input_audio_transcription.delta") {
      heard = event.speechmesh ? event.speechmesh.transcript : heard + event.delta;
      interim.textContent = heard;
    } else if (event.type === "conversation.item.input_audio_transcription.completed") {
      const language = (event.speechmesh && event.speechmesh.language) || "";
      const line = el("p", { textContent: event.transcript || "(nothing)" });
      line.dataset.language = language;
      if (language) line.title = languageLabel(language);
      output.insertBefore(line, interim);
      heard = interim.textContent = "";
      if (target && event.transcript) translations.push(translateLine(line, event.transcript, language, target));
    }
    return REALTIME_EVENTS[event.type];
  };
  render.translated = () => Promise.all(translations);
  return render;
}

async function translateLine(line, transcript, language, target) {
  const request = { texts: [transcript], target_language_code: target };
  if (language) request.source_language_code = language;
  let shown;
  try {
    const reply = await (await call("/v1/translate:translateText", { json: request })).json();
    shown = reply.translations[0].translated_text;
  } catch (error) {
    shown = `(not translated: ${error.message})`;
  }
  line.append(el("span", { className: "translation", textContent: ` → ${shown}` }));
}

let live = null;

async function startLive() {
  const button = $("live-run");
  const output = $("live-output");
  const status = output.previousElementSibling;
  if (!window.isSecureContext || !navigator.mediaDevices) {
    showError(status, new Error(
      "The browser gives the microphone only to secure pages: open this page as " +
      "http://localhost:PORT (an SSH tunnel works) or over HTTPS."));
    output.dataset.state = "error";
    return;
  }
  button.disabled = true;
  output.dataset.state = "busy";
  output.dataset.events = "0";
  setStatus(status, "busy", "Opening the microphone…");
  let media = null;
  let context = null;
  let socket = null;
  const stopAudio = () => {
    if (media) media.getTracks().forEach((track) => track.stop());
    if (context && context.state !== "closed") context.close();
  };
  try {
    media = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true },
    });
    context = new AudioContext();
    await context.resume();
    await context.audioWorklet.addModule("/static/capture.js");
    const capture = new AudioWorkletNode(context, "pcm-capture", {
      processorOptions: { rate: REALTIME_RATE },
    });
    context.createMediaStreamSource(media).connect(capture);
    capture.connect(context.destination); // silent; keeps the worklet pulled

    const translate = $("live-mode").value === "translate";
    const render = liveRenderer(output, translate ? $("live-target").value : "");
    let seconds = 0;
    let last = "connecting";
    let ready = false; // the session is configured: audio may go
    let finishing = false;
    let turnOpen = false;
    let failure = null;
    let quiet = null;
    let waited = null;
    const waiting = []; // audio captured before the session was ready
    const show = () => setStatus(status, "busy",
      `${finishing ? "Finishing" : "Listening"}: ${seconds.toFixed(1)} s sent · ${last}`);
    const append = (buffer) => {
      seconds += buffer.byteLength / 2 / REALTIME_RATE;
      socket.send(JSON.stringify({ type: "input_audio_buffer.append", audio: base64(buffer) }));
    };
    // After Stop: close once no turn is open and the server has been quiet for a moment.
    const settle = () => {
      clearTimeout(quiet);
      quiet = setTimeout(() => turnOpen || socket.close(1000, "done"), FINISH_QUIET_MS);
    };

    socket = new WebSocket(realtimeUrl());
    let opened = false;
    const closed = new Promise((resolve) => {
      socket.onopen = () => {
        opened = true;
        const transcription = { language: $("live-language").value }; // "": detect
        socket.send(JSON.stringify({
          type: "session.update",
          session: {
            type: "transcription",
            audio: {
              input: {
                format: { type: "audio/pcm", rate: REALTIME_RATE },
                transcription,
                turn_detection: { type: "server_vad", threshold: 0.5, silence_duration_ms: 500 },
              },
            },
          },
        }));
      };
      socket.onmessage = (message) => {
        const event = JSON.parse(message.data);
        output.dataset.events = String(Number(output.dataset.events) + 1);
        if (event.type === "error") {
          // Stop commits whatever is there; nothing there is not a failure.
          if (finishing && event.error && event.error.code === "input_audio_buffer_commit_empty") {
            settle();
            return;
          }
          failure = failure || realtimeError(event);
          socket.close(1000, "error");
          return;
        }
        if (event.type === "session.updated" && !ready) {
          ready = true;
          waiting.splice(0).forEach(append);
        }
        if (event.type === "input_audio_buffer.speech_started") turnOpen = true;
        if (event.type === "conversation.item.input_audio_transcription.delta") turnOpen = true;
        if (event.type === "conversation.item.input_audio_transcription.completed") turnOpen = false;
        last = render(event) || last;
        show();
        if (finishing) settle();
      };
      socket.onclose = resolve;
    });

    capture.port.onmessage = (event) => {
      if (finishing || socket.readyState !== WebSocket.OPEN) return;
      if (ready) append(event.data);
      else waiting.push(event.data);
    };
    live = {
      stop: () => {
        finishing = true;
        button.disabled = true;
        stopAudio();
        show();
        if (socket.readyState !== WebSocket.OPEN) return;
        socket.send(JSON.stringify({ type: "input_audio_buffer.commit" }));
        settle();
        waited = setTimeout(() => socket.close(1000, "done"), FINISH_MAX_MS);
      },
    };
    button.textContent = "Stop";
    button.disabled = false;
    output.dataset.state = "live";
    show();

    const end = await closed;
    clearTimeout(quiet);
    clearTimeout(waited);
    if (failure) throw failure;
    if (!opened) throw await refusal();
    if (!finishing) {
      throw new Error(`The realtime session ended: ${end.reason || `close code ${end.code}`}`);
    }
    if (translate) setStatus(status, "busy", "Translating…");
    await render.translated();
    setStatus(status, "done", `Done: ${seconds.toFixed(1)} s of audio, ${output.dataset.events} events`);
    output.dataset.state = "done";
  } catch (error) {
    showError(status, error);
    output.dataset.state = "error";
  } finally {
    stopAudio();
    if (socket && socket.readyState === WebSocket.OPEN) socket.close(1000, "done");
    live = null;
    button.textContent = "Start";
    button.disabled = false;
  }
}

$("live-run").addEventListener("click", () => (live ? live.stop() : startLive()));

function liveMode() {
  $("live-target").parentElement.hidden = $("live-mode").value !== "translate";
}
$("live-mode").addEventListener("change", liveMode);

// -- tabs and start-up ------------------------------------------------------------------------

function showTab(name) {
  if (!$(name)) return;
  for (const button of document.querySelectorAll("#tabs button")) {
    button.classList.toggle("active", button.dataset.tab === name);
  }
  for (const panel of document.querySelectorAll("main > section")) {
    panel.classList.toggle("active", panel.id === name);
  }
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
}

for (const button of document.querySelectorAll("#tabs button")) {
  button.addEventListener("click", () => showTab(button.dataset.tab));
}

$("api-key").value = localStorage.getItem("speechmesh-api-key") || "";
$("api-key").form.addEventListener("submit", (event) => event.preventDefault());
$("api-key").addEventListener("change", () => loadCatalog());
showTab(location.hash.slice(1) || "t2t");
liveMode();
loadCatalog().then(
  () => document.body.setAttribute("data-ready", "1"),
  (error) => {
    $("gateway").textContent = `cannot read the gateway: ${error.message}`;
    document.body.setAttribute("data-ready", "error");
  },
);
