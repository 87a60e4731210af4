"""The client commands of `speechmesh`: transcribe, translate, translate-speech, speak, voices,
jobs, health and languages, talking to the gateway (or one service) through speechmesh.client.

Exit codes: 0 success; 1 the call failed (nothing listening, a service down, a server error);
2 a usage error (bad option, missing or unreadable file, unknown language, voice or model).
"""

# One module per group of commands (recognition, translation, speech, jobs, info), each with its
# parsers; output.py holds what they share, failures.py explains failed calls.

from __future__ import annotations

import argparse
from collections.abc import Callable

from speechmesh.client.audio import AudioFileError
from speechmesh.client.cli import info, jobs, recognition, speech, translation
from speechmesh.client.cli.failures import Context, explain
from speechmesh.client.cli.output import AUDIO_FORMATS, FAILED, OK, USAGE, UsageError, err
from speechmesh.client.errors import SpeechmeshError
from speechmesh.client.sync import Client
from speechmesh.runtime.registry import SERVICES

__all__ = [
    "AUDIO_FORMATS",
    "FAILED",
    "OK",
    "USAGE",
    "UsageError",
    "add_commands",
    "add_model_commands",
    "main",
]

#: A command: (arguments, client, context) -> exit code.
Command = Callable[[argparse.Namespace, Client, Context], int]


def _client(args: argparse.Namespace) -> Client:
    return Client(
        args.target,
        tls=True if args.tls else None,
        api_key=args.api_key,
        token=args.token,
        ca_cert=args.ca_cert,
        timeout=args.timeout,
    )


def runner(command: Command, service: str) -> Callable[[argparse.Namespace], int]:
    """The function argparse calls for a command of `service`: opens the client, runs the
    command, and turns every failure into a message and an exit code."""

    def run(args: argparse.Namespace) -> int:
        ctx = Context(args, service)
        try:
            ctx.client = _client(args)
        except (ValueError, OSError) as error:  # a malformed target, an unreadable --ca-cert
            err(str(error))
            return USAGE
        with ctx.client as client:
            try:
                return command(args, client, ctx)
            except (UsageError, AudioFileError) as error:
                err(str(error))
                return USAGE
            except SpeechmeshError as error:
                return explain(error, ctx)
            except BrokenPipeError:  # `speechmesh ... | head`: the reader is gone
                return FAILED
            except (ValueError, OSError) as error:
                err(str(error))
                return USAGE
            except KeyboardInterrupt:
                return 130

    return run


def _connection_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection")
    group.add_argument(
        "--target",
        help="gateway (or service) host:port or URL; default $SPEECHMESH_TARGET or localhost:8080",
    )
    group.add_argument("--api-key", help="API key (x-api-key); default $SPEECHMESH_API_KEY")
    group.add_argument("--token", help="bearer token (JWT); default $SPEECHMESH_TOKEN")
    group.add_argument("--tls", action="store_true", help="connect with TLS")
    group.add_argument("--ca-cert", help="PEM certificate to trust (implies --tls)")
    group.add_argument(
        "--timeout", type=float, default=300.0, help="deadline of each call in seconds (300)"
    )
    return common


def add_commands(commands) -> None:
    """Adds the client commands to the `speechmesh` command's subparsers."""
    common = _connection_options()

    p = commands.add_parser(
        "transcribe",
        parents=[common],
        help="speech to text",
        description="Transcribe a recording (any container: WAV, FLAC, MP3, OGG, WebM, M4A,"
        " AIFF). Long files show a progress bar on a terminal. --stream sends the audio as a"
        " live stream (in real time; --fast: as fast as possible) and prints interim results"
        " in place and final lines as they come; --realtime does it over the gateway's"
        " WebSocket (ws://TARGET/v1/realtime).",
    )
    p.add_argument("file", metavar="FILE", help="audio file, or - for standard input")
    p.add_argument("--stream", action="store_true", help="stream recognition (live results)")
    p.add_argument(
        "--realtime",
        action="store_true",
        help="stream over the realtime WebSocket (/v1/realtime, OpenAI's Realtime events)"
        " instead of gRPC; implies --stream",
    )
    p.add_argument("--fast", action="store_true", help="--stream a file as fast as possible")
    p.add_argument("--language", help="language spoken (BCP-47, e.g. en); default: detect")
    p.add_argument("--translate", action="store_true", help="translate the speech to English")
    p.add_argument("--words", action="store_true", help="word times (and one cue per word)")
    p.add_argument("--format", choices=["text", "json", "srt", "vtt"], default="text")
    p.add_argument("--model", help="ASR model by the name `speechmesh health` shows")
    p.add_argument("--prompt", help="text that conditions the decoder (names, spelling)")
    p.add_argument(
        "--raw-rate",
        type=int,
        metavar="HZ",
        help="the input is raw 16-bit mono PCM at HZ (e.g. from `arecord -t raw`)",
    )
    p.set_defaults(func=runner(recognition.transcribe, "asr"))

    p = commands.add_parser(
        "translate",
        parents=[common],
        help="text to text in another language",
        description="Translate text; with -, each line of standard input.",
    )
    p.add_argument("text", metavar="TEXT", help="text, or - for standard input (line by line)")
    p.add_argument("--to", required=True, help="target language (BCP-47, e.g. fr)")
    p.add_argument("--from", dest="source", help="source language; some models need it")
    p.add_argument("--model", help="translation model")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(func=runner(translation.translate, "translate"))

    p = commands.add_parser(
        "translate-speech",
        parents=[common],
        help="speech to text or speech in another language",
        description="Translate a recording: print the translation (default, or with --text)"
        " and, with --out, write the translated speech.",
    )
    p.add_argument("file", metavar="FILE", help="audio file, or - for standard input")
    p.add_argument("--to", required=True, help="target language (BCP-47)")
    p.add_argument("--from", dest="source", help="language spoken")
    p.add_argument("--text", action="store_true", help="print the translated text")
    p.add_argument("--transcript", action="store_true", help="print the source transcript too")
    p.add_argument("--out", help="write translated speech here (- for standard output)")
    p.add_argument(
        "--format", choices=AUDIO_FORMATS, help="audio format (default from --out, or wav)"
    )
    p.add_argument("--voice", help="voice of the translated speech")
    p.add_argument("--model", help="translation model")
    p.set_defaults(func=runner(translation.translate_speech, "translate"))

    p = commands.add_parser(
        "speak",
        parents=[common],
        help="text to speech",
        description="Speak text with a stored voice (cloned) or a model's preset voice. Audio"
        " goes to --out, to standard output when piped, else to speech.<format>. --stream"
        " writes audio as each sentence is ready; with - it reads text as it arrives.",
    )
    p.add_argument("text", metavar="TEXT", help="text, or - for standard input")
    p.add_argument("--voice", help="stored voice or preset voice name")
    p.add_argument("--out", help="output file, or - for standard output")
    p.add_argument(
        "--format", choices=AUDIO_FORMATS, help="audio format (default from --out, or wav)"
    )
    p.add_argument("--stream", action="store_true", help="stream: write chunks as they arrive")
    p.add_argument("--language", help="language to speak (BCP-47)")
    p.add_argument("--model", help="TTS model")
    p.add_argument("--sample-rate", type=int, help="output sample rate in Hz")
    p.add_argument("--speed", type=float, help="speaking rate, 0.5 to 2.0")
    p.add_argument("--temperature", type=float, help="sampling temperature, 0 to 2")
    p.add_argument("--seed", type=int, help="seed, to get the same audio again")
    p.set_defaults(func=runner(speech.speak, "tts"))

    voices = commands.add_parser("voices", help="stored voices (cloned from recordings)")
    actions = voices.add_subparsers(dest="voices_command", required=True)
    p = actions.add_parser(
        "create",
        parents=[common],
        help="clone a voice from a recording",
        description="Store a voice from 3 to 30 s of one speaker and the exact words spoken.",
    )
    p.add_argument("name", metavar="NAME", help="voice id: lowercase letters, digits, hyphens")
    p.add_argument("--audio", required=True, help="reference recording")
    p.add_argument("--transcript", required=True, help="the exact words of the recording")
    p.add_argument("--language", help="language of the recording (BCP-47)")
    p.add_argument("--display-name", help="a label")
    p.add_argument("--model", help="cloning model (default: the default cloning model)")
    p.set_defaults(func=runner(speech.voices_create, "tts"))
    p = actions.add_parser("list", parents=[common], help="list stored voices")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(func=runner(speech.voices_list, "tts"))
    p = actions.add_parser("delete", parents=[common], help="delete a stored voice")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=runner(speech.voices_delete, "tts"))

    jobs.add_commands(commands, common, runner)

    p = commands.add_parser(
        "health",
        parents=[common],
        help="status, model, device and memory of every service",
        description="Check every service through the gateway (grpc.health.v1) and list its"
        " models with their state. A SERVING service with a model that failed to load is"
        " DEGRADED (its error is shown). Exit code 1 unless every service is SERVING or"
        " DEGRADED.",
    )
    p.add_argument("--json", action="store_true", help="JSON output")
    p.add_argument("--service", choices=list(SERVICES), help="only this service")
    p.set_defaults(func=runner(info.health, "gateway"))

    p = commands.add_parser(
        "languages",
        parents=[common],
        help="languages of every service",
        description="Languages the services know, by BCP-47 code: ASR, translation (text and"
        " speech, in and out) and TTS.",
    )
    p.add_argument("--service", choices=list(SERVICES), help="only this service")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(func=runner(info.languages, "asr"))


def add_model_commands(model_commands) -> None:
    """Adds `speechmesh models list|load|unload` (ASR's models, through the gateway) to the
    subparsers of `speechmesh models`."""
    common = _connection_options()
    p = model_commands.add_parser(
        "list", parents=[common], help="the ASR service's models and their state"
    )
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(func=runner(info.models_list, "asr"))
    p = model_commands.add_parser(
        "load",
        parents=[common],
        help="load an ASR model (operators only)",
        description="Load a model the ASR service knows, or a new one from --source; waits"
        " until it is ready. Needs an operator's key or token (SPEECHMESH_OPERATORS).",
    )
    p.add_argument("name", metavar="NAME", help="the model's id (ListModels)")
    p.add_argument("--source", default="", help="a new model's folder or Hugging Face id")
    p.set_defaults(func=runner(info.model_load, "asr"))
    p = model_commands.add_parser(
        "unload",
        parents=[common],
        help="unload an ASR model (operators only)",
        description="Free a model's memory (not the default model's); the next request that"
        " names it loads it again. Needs an operator's key or token.",
    )
    p.add_argument("name", metavar="NAME", help="the model's id (ListModels)")
    p.set_defaults(func=runner(info.model_unload, "asr"))


def main(argv: list[str] | None = None) -> int:
    """The client commands alone (`python -m speechmesh.client.cli transcribe ...`)."""
    parser = argparse.ArgumentParser(prog="speechmesh", description=__doc__)
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)
