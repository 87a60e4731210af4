"""The demo page (`speechmesh ui`) in a real headless Chromium, driven by Selenium, against
`speechmesh up` on tiny checkpoints (outputs are noise; every call is real).

The page loads with no console errors, a text translation round-trips, text is spoken (and a
bad field shows the gateway's field violation), an uploaded recording is transcribed, translated
to text and to speech, a voice is cloned from an upload and spoken with, and the live microphone
(Chromium's fake capture device playing a WAV file) transcribes over a WebSocket to the
gateway's realtime endpoint (`/v1/realtime`, through the page's server) and gets results.
Screenshots go to the test's temporary folder; with SPEECHMESH_UPDATE_SCREENSHOT=1 the
transcription of examples/hello.wav is also copied to docs/ui.png for the README: run it with a
real Whisper serving ASR (SPEECHMESH_ASR_MODEL=../shared/models/whisper-tiny.en, which
`speechmesh up --offline` serves instead of a tiny checkpoint) so that the picture shows real
words (docs/ui.md has the command).

Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them) and the `selenium`
package (dev extra); skipped without them.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
import soundfile as sf
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from speechmesh.ui.server import make_server
from tests.conftest import AUDIO, ROOT
from tests.gateway.conftest import run_envoy
from tests.servers import free_port

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Chromium and its driver (apt-get install chromium chromium-driver)",
)
WAIT_S = 90.0


# -- recordings: the committed example clip; the shared real reference when present -----------


def _voice_like(path: pathlib.Path, seconds: float) -> pathlib.Path:
    from tests.sounds import voice_like

    sf.write(path, voice_like(seconds), 16000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> dict[str, pathlib.Path]:
    """speech: to transcribe and stream; short: too short to clone from; reference: clonable."""
    folder = tmp_path_factory.mktemp("ui-audio")
    speech = ROOT / "examples" / "hello.wav"  # 5.8 s of espeak-ng speech, 16 kHz mono
    reference = AUDIO / "librivox" / "sense_and_sensibility_01_austen_64kb-0870.wav"
    if not reference.is_file():
        reference = _voice_like(folder / "reference.wav", 6.0)
    short = folder / "short.wav"
    sf.write(short, np.zeros(16000, np.int16), 16000)
    return {"speech": speech, "short": short, "reference": reference}


# -- the server and the browser ---------------------------------------------------------------


@pytest.fixture(scope="module")
def ui(up) -> str:
    """`speechmesh ui` in front of the suite's gateway; yields the page's address."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "speechmesh.cli",
            "ui",
            "--port",
            str(port),
            "--gateway",
            f"http://127.0.0.1:{up.gateway.port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith(f"speechmesh ui: http://localhost:{port}/"), first
        yield f"http://127.0.0.1:{port}/"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def browser(ui, recordings):
    options = Options()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1100,900",
        # The live microphone: grant it without asking, from a fake device playing a file.
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={recordings['speech']}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        driver.get(ui)
        WebDriverWait(driver, WAIT_S).until(
            lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready")
        )
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("ui-screenshots")


def tab(driver, name: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f"#tabs [data-tab={name}]").click()


def run(driver, button: str, output: str) -> tuple[str, str]:
    """Clicks `button` and waits for `output` to be done or failed: (state, status line)."""
    driver.find_element(By.ID, button).click()
    result = driver.find_element(By.ID, output)
    WebDriverWait(driver, WAIT_S).until(
        lambda d: result.get_attribute("data-state") in ("done", "error")
    )
    status = result.find_element(By.XPATH, "preceding-sibling::div[1]").text
    return result.get_attribute("data-state"), status


def audio_played(driver, output: str) -> None:
    """The output holds an <audio> of a non-empty blob."""
    player = driver.find_element(By.CSS_SELECTOR, f"#{output} audio")
    assert player.get_attribute("src").startswith("blob:")
    assert "kB" in driver.find_element(By.ID, output).text


def console(driver) -> list[dict]:
    return [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]


# -- without a browser ------------------------------------------------------------------------


@contextlib.contextmanager
def ui_server(gateway: str) -> Iterator[str]:
    """The UI server in this process, in front of `gateway`; yields its address."""
    server = make_server("127.0.0.1", 0, gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def fetch(url: str, body: bytes | None = None, **headers) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=body, method="POST" if body is not None else "GET", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_bad_gateway_address_is_a_usage_error(capsys):
    from speechmesh.cli import main

    assert main(["ui", "--gateway", "ftp://nowhere"]) == 2
    assert "--gateway takes http://HOST:PORT" in capsys.readouterr().err


def handshake_status(url: str) -> int:
    """The HTTP status a WebSocket handshake to `url` is answered with (101: it opened)."""
    try:
        with connect(url, open_timeout=30, max_size=None):
            return 101
    except InvalidStatus as error:
        return error.response.status_code


def test_unreachable_gateway_answers_a_status():
    closed = free_port()
    with ui_server(f"http://127.0.0.1:{closed}") as base:
        status, body = fetch(base + "/v1/asr/models")
        assert status == 502 and json.loads(body)["code"] == 14 and str(closed) in str(body)
        ws = base.replace("http://", "ws://")
        assert handshake_status(ws + "/v1/realtime") == 502
        assert fetch(base + "/static/../server.py")[0] == 404
        assert fetch(base + "/elsewhere")[0] == 404


def test_the_live_relay_is_gone():
    """The live microphone talks to /v1/realtime: the old REST relay's routes are 404."""
    with ui_server(f"http://127.0.0.1:{free_port()}") as base:
        assert fetch(base + "/ui/live/asr", b'{"streaming_config": {}}')[0] == 404
        assert fetch(base + "/ui/live/translate", b"{}")[0] == 404
        assert fetch(base + "/ui/live/some-id/audio", b"\0\0")[0] == 404
        assert fetch(base + "/ui/live/some-id/end", b"")[0] == 404
        assert fetch(base + "/ui/live/some-id/events")[0] == 404
        status, body = fetch(base + "/ui/config")
        assert status == 200 and set(json.loads(body)) == {"gateway"}


def test_credentials_pass_through_to_an_authenticating_gateway(up, tmp_path, credentials):
    upstreams = {f"{name}_upstream": f"127.0.0.1:{up.ports[name]}" for name in ("asr", "tts")}
    upstreams["asr_websocket_upstream"] = f"127.0.0.1:{up.ports['asr_websocket']}"
    with (
        run_envoy(
            tmp_path, ["asr"], auth="api_key", api_keys_file=credentials["api_keys"], **upstreams
        ) as (gateway, _),
        ui_server(f"http://127.0.0.1:{gateway.port}") as base,
    ):
        status, body = fetch(base + "/v1/asr/models")
        assert status == 401 and json.loads(body)["code"] == 16
        status, body = fetch(base + "/v1/asr/models", Authorization="Bearer alice-key-0001")
        assert status == 200 and json.loads(body)["models"]
        # The realtime WebSocket: the key rides in ?api_key= (a browser cannot set headers on
        # a WebSocket) and reaches the gateway as `Authorization: Bearer KEY`.
        realtime = base.replace("http://", "ws://") + "/v1/realtime"
        assert handshake_status(realtime) == 401
        assert handshake_status(realtime + "?api_key=wrong-key") == 401
        with connect(realtime + "?api_key=alice-key-0001&intent=transcription") as socket:
            created = json.loads(socket.recv(timeout=30))
            assert created["type"] == "transcription_session.created", created  # ?intent= kept
            socket.send(json.dumps({"type": "input_audio_buffer.commit"}))
            error = json.loads(socket.recv(timeout=30))
            assert error["error"]["code"] == "input_audio_buffer_commit_empty", error


# -- in Chromium ------------------------------------------------------------------------------


def test_page_loads(browser):
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1"
    badges = browser.find_elements(By.CSS_SELECTOR, "#models span")
    assert [(b.text, b.get_attribute("class")) for b in badges] == [
        ("asr", "up"),
        ("translate", "up"),
        ("tts", "up"),
    ]
    assert browser.find_element(By.ID, "noise").is_displayed()  # tiny random weights
    # named, with their service (make run serves real ASR and TTS models beside tiny ones)
    assert "tiny-seamless_m4t_v2 (translate)" in browser.find_element(By.ID, "noise-models").text
    assert Select(browser.find_element(By.ID, "t2t-target")).first_selected_option.text
    assert console(browser) == []


def test_text_translation_round_trips(browser):
    tab(browser, "t2t")
    Select(browser.find_element(By.ID, "t2t-source")).select_by_value("en")
    Select(browser.find_element(By.ID, "t2t-target")).select_by_value("fr")
    state, status = run(browser, "t2t-run", "t2t-output")
    assert state == "done", status
    translation = browser.find_element(By.CSS_SELECTOR, "#t2t-output .text").text
    assert translation and translation != "(nothing)"
    assert "en → fr" in browser.find_element(By.ID, "t2t-output").text


def test_text_is_spoken_and_errors_name_the_field(browser):
    tab(browser, "t2s")
    text = browser.find_element(By.ID, "t2s-text")
    text.clear()
    text.send_keys("Hello there.")
    speed = browser.find_element(By.ID, "tts-speed")
    speed.clear()
    speed.send_keys("5")
    state, status = run(browser, "tts-run", "tts-output")
    assert state == "error"
    assert status.startswith("400 INVALID_ARGUMENT: config.speed"), status
    speed.clear()
    speed.send_keys("1")
    state, status = run(browser, "tts-run", "tts-output")
    assert state == "done", status
    audio_played(browser, "tts-output")
    state, status = run(browser, "t2s-run", "t2s-output")
    assert state == "done", status
    audio_played(browser, "t2s-output")


def test_uploaded_file_is_transcribed_and_translated(browser, recordings, shots):
    tab(browser, "s2t")
    browser.find_element(By.ID, "s2t-file").send_keys(str(recordings["speech"]))
    Select(browser.find_element(By.ID, "s2t-language")).select_by_value("en")
    state, status = run(browser, "s2t-run", "s2t-output")
    assert state == "done", status
    assert browser.find_element(By.CSS_SELECTOR, "#s2t-output .text").text
    assert "of audio" in browser.find_element(By.ID, "s2t-output").text
    shot = shots / "speech-to-text.png"  # the transcript alone: translation is noise here
    browser.save_screenshot(str(shot))
    if os.environ.get("SPEECHMESH_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, ROOT / "docs" / "ui.png")
    state, status = run(browser, "s2tt-run", "s2tt-output")
    assert state == "done", status
    assert browser.find_element(By.CSS_SELECTOR, "#s2tt-output .text").text
    browser.save_screenshot(str(shots / "speech-to-text-translated.png"))

    tab(browser, "s2s")
    browser.find_element(By.ID, "s2s-file").send_keys(str(recordings["speech"]))
    state, status = run(browser, "s2s-run", "s2s-output")
    assert state == "done", status
    audio_played(browser, "s2s-output")
    browser.save_screenshot(str(shots / "speech-to-speech.png"))


def test_voice_is_cloned_from_an_upload(browser, recordings, shots):
    tab(browser, "voices")
    browser.find_element(By.ID, "clone-id").send_keys("ui-voice")
    browser.find_element(By.ID, "clone-transcript").send_keys("Words of the reference.")
    browser.find_element(By.ID, "clone-file").send_keys(str(recordings["short"]))
    state, status = run(browser, "clone-run", "clone-output")
    assert state == "error" and "reference_audio" in status, status
    browser.find_element(By.ID, "clone-file").send_keys(str(recordings["reference"]))
    state, status = run(browser, "clone-run", "clone-output")
    assert state == "done", status
    assert "voices/ui-voice" in browser.find_element(By.ID, "clone-output").text
    voice = Select(browser.find_element(By.ID, "clone-voice"))
    assert voice.first_selected_option.get_attribute("value") == "voices/ui-voice"
    say = browser.find_element(By.ID, "clone-say")
    say.clear()
    say.send_keys("Hi.")
    state, status = run(browser, "clone-speak", "clone-speak-output")
    assert state == "done", status
    audio_played(browser, "clone-speak-output")
    browser.save_screenshot(str(shots / "voice-cloning.png"))
    tts_voices = Select(browser.find_element(By.ID, "tts-voice")).options
    assert "voice:voices/ui-voice" in [option.get_attribute("value") for option in tts_voices]
    state, status = run(browser, "clone-delete", "clone-speak-output")
    assert state == "done", status
    assert "voices/ui-voice" not in [option.get_attribute("value") for option in voice.options]


def live_session(browser, mode: str) -> tuple[str, list]:
    """Starts the live microphone in `mode`, lets it hear speech, stops it and waits for the
    end: (the status line, the final lines)."""
    tab(browser, "live")
    Select(browser.find_element(By.ID, "live-mode")).select_by_value(mode)
    Select(browser.find_element(By.ID, "live-language")).select_by_value("en")
    output = browser.find_element(By.ID, "live-output")
    status = output.find_element(By.XPATH, "preceding-sibling::div[1]")
    browser.find_element(By.ID, "live-run").click()
    # session.created, session.updated, then speech from the fake device (hello.wav, looped)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if output.get_attribute("data-state") == "error":
            break
        if "speech" in status.text or "interim" in status.text or "end of turn" in status.text:
            break
        time.sleep(0.25)
    assert output.get_attribute("data-state") == "live", status.text
    assert status.text.startswith("Listening:"), status.text
    time.sleep(1.0)  # into the first words
    browser.find_element(By.ID, "live-run").click()  # Stop: commit, the last turn completes
    WebDriverWait(browser, WAIT_S).until(
        lambda d: output.get_attribute("data-state") in ("done", "error")
    )
    assert output.get_attribute("data-state") == "done", status.text
    assert status.text.startswith("Done:"), status.text
    assert int(output.get_attribute("data-events")) >= 4
    return status.text, output.find_elements(By.CSS_SELECTOR, "p:not(.interim)")


def test_live_microphone_transcribes_over_the_realtime_websocket(browser, up, shots):
    status, finals = live_session(browser, "asr")
    # The words heard before Stop complete as at least one final line (tiny random Whisper:
    # its words are noise, possibly none), with the language the session asked for.
    assert finals, status
    assert all(line.get_attribute("data-language") == "en" for line in finals)
    if "(asr)" in browser.find_element(By.ID, "real-models").text:  # real Whisper: real words
        heard = " ".join(line.text for line in finals).lower()
        assert "hello" in heard, heard  # the first words, completed by the commit
    browser.save_screenshot(str(shots / "live.png"))
    # The page's socket went through the gateway: Envoy counted the upgrade on the ASR
    # WebSocket port's cluster.
    url = f"http://127.0.0.1:{up.gateway.admin_port}/stats?filter=asr_realtime.upstream_cx_total"
    stats = urllib.request.urlopen(url, timeout=10).read().decode()
    assert int(stats.rpartition(": ")[2]) >= 1, stats


def test_live_microphone_translates_each_line(browser, shots):
    _, finals = live_session(browser, "translate")
    assert finals and all(" → " in line.text for line in finals), [f.text for f in finals]
    browser.save_screenshot(str(shots / "live-translated.png"))


def test_console_shows_only_the_provoked_errors(browser):
    """The two failed calls above (speed 5, a short reference) are the only console errors."""
    entries = console(browser)
    assert all("status of 400" in entry["message"] for entry in entries), entries
    assert len(entries) == 2, entries
