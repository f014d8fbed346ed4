"""The web page end to end in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver`, driven by selenium) opens the page served by uvicorn, with a fake camera
fed from a video the test makes from the bundled astronaut portrait, and a face box with an
emotion label must appear over the video; then a photo upload must show one too.

Where the browser cannot start this skips with the reason, except under CI=true, where it
fails (`make test` installs chromium). A screenshot is saved in the test's tmp folder.

README's picture of the page (docs/serve.png) is this test's screenshot: `make screenshot`
runs it with FERKIT_SCREENSHOT=docs/serve.png, serving what `ferkit serve` serves by default
(the shipped model) instead of the tiny network, and records the page's model line in the
PNG; `test_the_readme_picture_shows_the_model_ferkit_serve_serves` fails once it is stale.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
webdriver = pytest.importorskip("selenium.webdriver")

import uvicorn  # noqa: E402
from selenium.common.exceptions import TimeoutException, WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from ferkit.infer.demo import sample_image  # noqa: E402
from ferkit.infer.frames import read_image  # noqa: E402
from ferkit.labels import EMOTIONS  # noqa: E402
from ferkit.serve.app import create_app  # noqa: E402

from conftest import tiny_net  # noqa: E402

CHROMIUM = os.environ.get("FERKIT_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("FERKIT_CHROMEDRIVER", "/usr/bin/chromedriver")
LABEL = re.compile(rf"^(#\d+ )?({'|'.join(EMOTIONS)}) [01]\.\d\d$")
WAIT_S = 40
ROOT = Path(__file__).resolve().parents[1]
PICTURE = ROOT / "docs" / "serve.png"  # README's picture of the page
SCREENSHOT = os.environ.get("FERKIT_SCREENSHOT")  # `make screenshot`: where to write it
MODEL_KEY = "ferkit:model"  # the PNG text chunk with the page's model line


def write_y4m(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    """YUV4MPEG2 4:2:0 video, the format Chromium's fake camera reads (it loops the file)."""
    height, width = frames[0].shape[:2]
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            out.write(b"FRAME\n")
            out.write(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path


@pytest.fixture(scope="module")
def camera_video(tmp_path_factory) -> Path:
    """640×480, 8 frames: the portrait on a blurred background, drifting a few pixels."""
    portrait = cv2.resize(read_image(sample_image()), (400, 400))
    background = cv2.resize(cv2.GaussianBlur(portrait, (0, 0), 25), (640, 480))
    frames = []
    for i in range(8):
        frame = background.copy()
        x, y = 110 + 4 * i, 40
        frame[y : y + 400, x : x + 400] = portrait
        frames.append(frame)
    return write_y4m(tmp_path_factory.mktemp("camera") / "astronaut.y4m", frames)


@pytest.fixture(scope="module")
def server():
    """The app on a real uvicorn server in a background thread, on a free loopback port:
    (its URL, the description of the model it serves). It serves the tiny untrained network,
    or for README's picture what `ferkit serve` serves by default."""
    app = create_app(None if SCREENSHOT else tiny_net())
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", app.state.engine.choice.description
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture(scope="module")
def browser(camera_video, tmp_path_factory):
    """Headless Chromium with a fake camera playing `camera_video`."""
    from selenium.webdriver.chrome.service import Service

    profile = tmp_path_factory.mktemp("chromium-profile")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={camera_video}", f"--user-data-dir={profile}",
        "--window-size=1280,1120", "--disable-dev-shm-usage",
    ):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    except (WebDriverException, OSError) as error:
        reason = f"headless Chromium could not start ({CHROMIUM}, {CHROMEDRIVER}): {error}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason + " — install with `apt-get install chromium chromium-driver`")
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


# The overlay is redrawn on every answer, so read a face in one script call (no stale handles).
_FIRST_FACE = """
const face = document.querySelector(`#${arguments[0]} .face`);
if (!face) return null;
const rect = face.getBoundingClientRect();
return {label: face.querySelector(".face-label").textContent, emotion: face.dataset.label,
        width: rect.width, height: rect.height,
        bars: [...face.querySelectorAll(".bar .name")].map((s) => s.textContent)};
"""


def _wait_for_face(driver, overlay: str) -> dict:
    """The first face box drawn in `overlay` (label, size, bar names), waiting up to WAIT_S."""
    try:
        return WebDriverWait(driver, WAIT_S).until(lambda d: d.execute_script(_FIRST_FACE, overlay))
    except TimeoutException:
        status = driver.find_element(By.ID, "status").text
        logs = [entry["message"] for entry in driver.get_log("browser")]
        pytest.fail(f"no face box in #{overlay} after {WAIT_S}s; status {status!r}; console {logs}")


def save_picture(shot: Path, dest: Path, model_line: str, width: int = 960) -> None:
    """README's picture: the screenshot, `width` pixels wide in 256 colours (a fifth of the
    bytes), with the page's model line in a PNG text chunk; written atomically."""
    from PIL import Image, PngImagePlugin

    from ferkit.files import atomic_path

    info = PngImagePlugin.PngInfo()
    info.add_text(MODEL_KEY, model_line)
    with Image.open(shot) as image, atomic_path(dest) as tmp:
        size = (width, round(image.height * width / image.width))
        small = image.convert("RGB").resize(size, Image.Resampling.LANCZOS)
        small.quantize(256).save(tmp, pnginfo=info, optimize=True)


def test_webcam_page_shows_face_boxes_and_labels(browser, server, tmp_path):
    url, description = server
    browser.get(url + "/")
    WebDriverWait(browser, 20).until(
        lambda d: d.find_element(By.ID, "model").text != "loading model…"
    )
    model_line = browser.find_element(By.ID, "model").text
    assert model_line == f"model: {description}"
    assert SCREENSHOT or description == "Sequential given by the caller"
    browser.find_element(By.ID, "start").click()

    face = _wait_for_face(browser, "overlay")
    assert LABEL.match(face["label"]), face
    assert face["emotion"] in EMOTIONS and face["emotion"] in face["label"]
    assert face["width"] > 20 and face["height"] > 20  # a real box over the video
    assert face["bars"] == list(EMOTIONS)  # one probability bar per emotion
    # The stream keeps answering: FPS and the timeline fill in.
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_element(By.ID, "fps").text != "–")
    assert float(browser.find_element(By.ID, "fps").text) > 0
    assert int(browser.find_element(By.ID, "count").text) >= 1

    # The smoothing control reconfigures this connection.
    from selenium.webdriver.support.select import Select

    Select(browser.find_element(By.ID, "smoothing")).select_by_value("mean")
    WebDriverWait(browser, 20).until(
        lambda d: "mean of 5 frames" in d.find_element(By.ID, "status").text
    )

    # A photo upload gets its own boxes.
    browser.find_element(By.ID, "file").send_keys(str(sample_image()))
    photo_face = _wait_for_face(browser, "photo-overlay")
    assert LABEL.match(photo_face["label"]) and photo_face["bars"] == list(EMOTIONS)
    assert "1 face(s)" in browser.find_element(By.ID, "photo-status").text

    time.sleep(5.0 if SCREENSHOT else 1.0)  # let the timeline gather a few more points
    shot = tmp_path / "ferkit-serve-page.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    severe = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe
    if SCREENSHOT:  # `make screenshot`: README's picture, from this very page
        save_picture(shot, Path(SCREENSHOT), model_line)


def test_the_readme_picture_shows_the_model_ferkit_serve_serves(monkeypatch):
    """docs/serve.png is retaken by `make screenshot` (the test above, serving what
    `ferkit serve` serves by default); when that model changes, the picture is stale."""
    from PIL import Image

    from ferkit.infer.loading import choose_model

    monkeypatch.delenv("FERKIT_MODEL", raising=False)
    with Image.open(PICTURE) as picture:
        shown = picture.text.get(MODEL_KEY)
    served = f"model: {choose_model().description}"
    assert shown == served, f"{PICTURE} shows {shown!r}, not {served!r}: run `make screenshot`"
