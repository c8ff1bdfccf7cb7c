"""The HTTP API with FastAPI's test client: good requests, every kind of bad one, and concurrency."""

from __future__ import annotations

import base64
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient  # fastapi and python-multipart (uploads) are dependencies
from PIL import Image, ImageDraw

from cnnlab.recognition.preprocess import prepare_digit
from cnnlab.recognition.serve import create_app

STROKES = {  # digits drawn as pen strokes in a 100x100 box (x, y)
    0: [("ellipse", (25, 12, 75, 88))],
    1: [("line", [(50, 10), (50, 90)])],
    7: [("line", [(20, 12), (80, 12), (42, 90)])],
}


def draw_digits(labels, size=100, pen=9, paper=255, ink=0) -> Image.Image:
    """Digits side by side, dark on light, made of strokes like a person would draw them."""
    image = Image.new("L", (size * len(labels), size), paper)
    draw = ImageDraw.Draw(image)
    for k, label in enumerate(labels):
        for kind, shape in STROKES[label]:
            if kind == "ellipse":
                x0, y0, x1, y1 = shape
                draw.ellipse((x0 + k * size, y0, x1 + k * size, y1), outline=ink, width=pen)
            else:
                draw.line([(x + k * size, y) for x, y in shape], fill=ink, width=pen, joint="curve")
    return image


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def decode_data_url(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


class TemplateModel:
    """Stand-in for a trained network: nearest template (correlation) among drawn 0, 1 and 7.

    Same interface as ``cnnlab.engine.model.Sequential``: ``predict_proba((N,1,28,28)) -> (N,10)`` and
    ``feature_maps(x) -> [(name, (N,C,H,W))]``. It also records how many calls overlap in time.
    """

    def __init__(self, delay: float = 0.0):
        self.templates = {label: prepare_digit(draw_digits([label])) for label in STROKES}
        self.delay = delay
        self.active = 0
        self.max_active = 0
        self._count_lock = threading.Lock()

    def predict_proba(self, x):
        assert x.dtype == np.float32 and x.shape[1:] == (1, 28, 28)
        with self._count_lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        time.sleep(self.delay)
        logits = np.full((len(x), 10), -5.0)
        flat = x.reshape(len(x), -1)
        for label, template in self.templates.items():
            t = template.ravel()
            corr = [np.corrcoef(row, t)[0, 1] for row in flat]
            logits[:, label] = 10 * np.asarray(corr)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        with self._count_lock:
            self.active -= 1
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def feature_maps(self, x):
        n = len(x)
        conv1 = np.stack([x[:, 0, :24, :24], x[:, 0, 4:, 4:]], axis=1)  # (N, 2, 24, 24)
        return [("conv1", conv1), ("conv2", np.zeros((n, 3, 8, 8), np.float32))]


@pytest.fixture(scope="module")
def model():
    return TemplateModel()


@pytest.fixture(scope="module")
def client(model):
    with TestClient(create_app(model, max_upload_bytes=200_000)) as c:
        yield c


def upload(client, data: bytes, query: str = "", name="digit.png", content_type="image/png"):
    return client.post(f"/api/predict{query}", files={"file": (name, data, content_type)})


# -- good requests -----------------------------------------------------------------------------------
@pytest.mark.parametrize("label", [0, 1, 7])
def test_upload_answers_with_prediction_top_k_and_processed_image(client, label):
    picture = draw_digits([label])
    response = upload(client, png(picture))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["prediction"] == label
    probabilities = body["probabilities"]
    assert len(probabilities) == 10 and sum(probabilities) == pytest.approx(1.0, abs=1e-4)
    top = body["top_k"]
    assert len(top) == 5 and top[0]["label"] == label
    assert [t["probability"] for t in top] == sorted((t["probability"] for t in top), reverse=True)
    assert top[0]["probability"] == pytest.approx(max(probabilities))
    processed = decode_data_url(body["processed"])
    assert processed.shape == (28, 28)
    assert np.abs(processed / 255.0 - prepare_digit(picture)).max() < 1 / 255 + 1e-6
    assert "feature_maps" not in body and "number" not in body


def test_data_url_json_and_raw_body_give_the_same_answer(client):
    data = png(draw_digits([7]))
    by_upload = upload(client, data).json()
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    by_json = client.post("/api/predict", json={"image": url})
    by_raw = client.post("/api/predict", content=data, headers={"content-type": "image/png"})
    assert by_json.status_code == 200 and by_raw.status_code == 200
    assert by_json.json() == by_upload == by_raw.json()


def test_top_k_parameter(client):
    body = upload(client, png(draw_digits([1])), "?top_k=3").json()
    assert len(body["top_k"]) == 3 and body["top_k"][0]["label"] == 1


def test_feature_maps_on_request(client, model):
    picture = draw_digits([0])
    body = upload(client, png(picture), "?features=true").json()
    maps = body["feature_maps"]
    assert [m["layer"] for m in maps] == ["conv1", "conv2"]
    assert maps[0]["shape"] == [2, 24, 24] and len(maps[0]["channels"]) == 2
    first = decode_data_url(maps[0]["channels"][0])
    assert first.shape == (24, 24)
    # the stand-in's first channel is the top-left 24x24 of the processed digit: same picture, rescaled
    expected = prepare_digit(picture)[:24, :24]
    assert np.corrcoef(first.ravel(), expected.ravel())[0, 1] > 0.99
    assert decode_data_url(maps[1]["channels"][2]).max() == 0  # a silent layer stays black


def test_number_mode_reads_digits_left_to_right(client):
    picture = draw_digits([1, 7, 0, 7])
    body = upload(client, png(picture), "?number=true").json()
    assert body["number"] == "1707"
    digits = body["digits"]
    assert [d["label"] for d in digits] == [1, 7, 0, 7]
    assert all(0.5 < d["probability"] <= 1.0 for d in digits)
    lefts = [d["box"][0] for d in digits]
    assert lefts == sorted(lefts) and all(k * 100 <= x < (k + 1) * 100 for k, x in enumerate(lefts))
    assert decode_data_url(digits[2]["processed"]).shape == (28, 28)


def test_blank_drawing_is_200_with_null_prediction(client):
    blank = png(Image.new("L", (280, 280), 255))
    body = upload(client, blank, "?number=true").json()
    assert body["prediction"] is None and body["number"] is None and body["digits"] == []
    assert "no digit found" in body["message"]


# -- bad requests --------------------------------------------------------------------------------------
def test_body_over_the_limit_is_413_by_header_and_by_counting(client):
    big = b"\x89PNG" + bytes(300_000)
    response = client.post("/api/predict", content=big, headers={"content-type": "image/png"})
    assert response.status_code == 413 and "limit" in response.json()["detail"]

    def chunks():  # no Content-Length: the server must count as the bytes arrive
        for _ in range(30):
            yield bytes(10_000)

    response = client.post("/api/predict", content=chunks(), headers={"content-type": "image/png"})
    assert response.status_code == 413
    assert upload(client, png(draw_digits([1]))).status_code == 200  # the server is still fine


def test_multipart_over_the_limit_is_413(client):
    response = upload(client, bytes(250_000))
    assert response.status_code == 413


def test_not_an_image_is_415(client):
    response = upload(client, b"GIF89a but not really", name="x.gif", content_type="image/gif")
    assert response.status_code == 415 and "PNG, JPEG" in response.json()["detail"]
    response = client.post("/api/predict", content=b"hello", headers={"content-type": "text/plain"})
    assert response.status_code == 415 and "text/plain" in response.json()["detail"]
    truncated = png(draw_digits([7]))[:200]
    assert upload(client, truncated).status_code == 415


def test_bad_base64_missing_file_and_empty_body_are_400(client):
    response = client.post("/api/predict", json={"image": "data:image/png;base64,@@@not-base64@@@"})
    assert response.status_code == 400 and "base64" in response.json()["detail"]
    response = client.post("/api/predict", data={"something": "else"}, files={"other": ("", b"", "")})
    assert response.status_code in (400, 415)
    response = client.post("/api/predict", data={"field": "value"})  # a form without any file
    assert response.status_code in (400, 415)
    response = client.post("/api/predict", content=b"", headers={"content-type": "image/png"})
    assert response.status_code == 400


@pytest.mark.parametrize(
    "body, query",
    [(b"{not json", ""), (b'{"picture": "x"}', ""), (b"[1, 2, 3]", ""), (b'{"image": 5}', "")],
)
def test_malformed_json_is_422(client, body, query):
    response = client.post(f"/api/predict{query}", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text


def test_bad_query_is_422(client):
    assert upload(client, png(draw_digits([1])), "?top_k=0").status_code == 422
    assert upload(client, png(draw_digits([1])), "?number=maybe").status_code == 422


def test_decompression_bomb_is_refused(client):
    from test_preprocess import bomb_png

    response = upload(client, bomb_png(60_000, 60_000))
    assert response.status_code == 413 and "refused" in response.json()["detail"]
    url = "data:image/png;base64," + base64.b64encode(bomb_png(8_000, 8_000)).decode()
    assert client.post("/api/predict", json={"image": url}).status_code == 413


def test_a_failing_model_gives_500_and_the_server_keeps_serving():
    class Flaky(TemplateModel):
        fail = True

        def predict_proba(self, x):
            if Flaky.fail:
                Flaky.fail = False
                raise RuntimeError("boom")
            return super().predict_proba(x)

    with TestClient(create_app(Flaky()), raise_server_exceptions=False) as c:
        assert upload(c, png(draw_digits([7]))).status_code == 500
        assert upload(c, png(draw_digits([7]))).json()["prediction"] == 7


# -- concurrency -----------------------------------------------------------------------------------
def test_concurrent_requests_get_their_own_answers_and_inference_is_serialized():
    model = TemplateModel(delay=0.01)
    pictures = {label: png(draw_digits([label])) for label in STROKES}
    with TestClient(create_app(model)) as c:

        def ask(i):
            label = [0, 1, 7][i % 3]
            body = upload(c, pictures[label], "?features=true" if i % 2 else "").json()
            return label, body["prediction"]

        with ThreadPoolExecutor(max_workers=16) as pool:
            answers = list(pool.map(ask, range(48)))
    assert all(expected == got for expected, got in answers), answers
    assert model.max_active == 1  # the lock: never two inferences in the model at once


# -- the rest of the app ---------------------------------------------------------------------------
def test_healthz_openapi_and_page(client):
    assert client.get("/healthz").json()["status"] == "ok"
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/api/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(body)
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for element in ('id="canvas"', 'id="clear"', 'id="prediction"', 'id="bars"', 'id="processed"', 'id="upload"'):
        assert element in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        assert asset in page.text
        response = client.get(asset)
        assert response.status_code == 200 and len(response.text) > 500
    # everything local: no script, style or font from another host
    assert "http://" not in page.text and "https://" not in page.text
    assert "touch-action: none" in client.get("/static/style.css").text


def test_bundled_model_is_the_default():
    with TestClient(create_app()) as c:
        body = upload(c, png(draw_digits([1])), "?features=true").json()
    assert body["prediction"] == 1
    assert body["feature_maps"] and all(m["channels"] for m in body["feature_maps"])


def test_the_bundled_model_answers_not_a_digit_and_runs_on_one_blas_thread(monkeypatch):
    """A letter gets ``prediction: null`` from the model's "not a digit" class, the ten digits' probabilities
    stay ten, and the network runs with BLAS on one thread (small products; threads would wait on a busy core)."""
    from PIL import ImageFont

    from cnnlab.engine.ops import conv_kernels
    from cnnlab.io import load_bundled_model
    from cnnlab.recognition.serve.recognize import Recognizer

    recognizer = Recognizer(load_bundled_model())
    seen = []
    forward = recognizer.model.predict_proba
    monkeypatch.setattr(recognizer.model, "predict_proba", lambda x: seen.append(conv_kernels.BLAS_THREADS) or forward(x))
    letter = Image.new("L", (280, 280), 0)
    ImageDraw.Draw(letter).text((140, 140), "K", fill=255, anchor="mm", font=ImageFont.load_default(size=200))
    refused = recognizer.recognize(letter)
    assert refused["prediction"] is None and "not a digit" in refused["message"], refused
    answer = recognizer.recognize(png(draw_digits([7])))
    assert answer["prediction"] == 7 and len(answer["probabilities"]) == 10 and 0 <= answer["not_a_digit"] < 0.2
    assert seen == [1, 1] and conv_kernels.BLAS_THREADS is None  # limited while the model ran, restored after


# -- the `predict` command (cnnlab.recognition.serve.cli, registered by cnnlab.cli) ---------------------------------
@pytest.fixture
def run_predict(monkeypatch, model):
    from click.testing import CliRunner

    import cnnlab.recognition.serve.cli as serve_cli

    monkeypatch.setattr(serve_cli, "_load", lambda path: model)
    return lambda *args: CliRunner().invoke(serve_cli.predict, [str(a) for a in args])


def test_predict_command_text_json_number_and_show(run_predict, tmp_path):
    seven, number, blank = tmp_path / "seven.png", tmp_path / "number.png", tmp_path / "blank.png"
    draw_digits([7]).save(seven)
    draw_digits([7, 0, 1]).save(number)
    Image.new("L", (60, 60), 255).save(blank)

    text = run_predict(seven)
    assert text.exit_code == 0 and "answer: 7" in text.output

    result = run_predict("--json", "--top-k", 3, seven, blank)
    assert result.exit_code == 0, result.output
    answers = __import__("json").loads(result.output)
    assert [a["file"] for a in answers] == [str(seven), str(blank)]
    assert answers[0]["prediction"] == 7 and len(answers[0]["top_k"]) == 3 and "processed" not in answers[0]
    assert answers[1]["prediction"] is None and "no digit found" in answers[1]["message"]

    result = run_predict("--json", "--number", number)
    reading = __import__("json").loads(result.output)[0]
    assert reading["number"] == "701" and [d["label"] for d in reading["digits"]] == [7, 0, 1]

    out = tmp_path / "stages.png"
    assert run_predict("--show", out, seven).exit_code == 0
    sheet = np.asarray(Image.open(out).convert("L"))
    # the strip of stages (cnnlab.recognition.stages): original ... 28x28, the last panel square and mostly black
    from cnnlab.recognition.stages import GAP, PANEL_HEIGHT

    assert sheet.shape[0] > PANEL_HEIGHT and sheet.shape[1] > 5 * PANEL_HEIGHT
    last = sheet[GAP // 2 + 22 : GAP // 2 + 22 + PANEL_HEIGHT, -GAP - PANEL_HEIGHT : -GAP]
    assert last.mean() < 60


def test_predict_command_refuses_bad_input(run_predict, tmp_path):
    from cnnlab.engine.errors import CnnlabError

    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    result = run_predict(junk)
    assert isinstance(result.exception, CnnlabError) and "could not be read" in str(result.exception)
    assert run_predict(tmp_path / "missing.png").exit_code == 2  # click: the path does not exist


def test_explain_adds_a_grad_cam_overlay_of_the_predicted_class():
    """``?explain=true`` answers what made the bundled model say it: Grad-CAM of its last convolution,
    as a translucent RGBA overlay; a blank picture has no explanation."""
    from cnnlab.explain import grad_cam
    from cnnlab.io import load_bundled_model
    from cnnlab.recognition.serve.recognize import model_inputs

    model = load_bundled_model()
    app_client = TestClient(create_app(model=model))
    picture = draw_digits([7])
    body = upload(app_client, png(picture), "?explain=true").json()
    why = body["explanation"]
    assert body["prediction"] == 7 and why["label"] == 7 and why["method"] == "grad-cam"
    overlay = Image.open(io.BytesIO(base64.b64decode(why["heatmap"].split(",", 1)[1])))
    assert overlay.mode == "RGBA" and overlay.size == (112, 112)
    alpha = np.asarray(overlay)[..., 3].astype(float)
    # the overlay is opaque where Grad-CAM is strong and clear where it is zero
    cam = grad_cam(model, model_inputs(model, prepare_digit(picture)[None]), 7).upsampled((28, 28))[0]
    small = np.asarray(Image.fromarray(alpha.astype(np.uint8)).resize((28, 28), Image.Resampling.BILINEAR), float)
    assert np.corrcoef(small.ravel(), cam.ravel())[0, 1] > 0.9
    assert "explanation" not in upload(app_client, png(picture)).json()  # only on request
    blank = upload(app_client, png(Image.new("L", (100, 100), 255)), "?explain=true").json()
    assert blank["prediction"] is None and blank["explanation"] is None
