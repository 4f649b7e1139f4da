"""``QA_QUANTIZE=auto``: the mode measured fastest on this CPU, once, then remembered for CPUs of its kind.

Which way of running EmbeddingGemma is fastest depends on the CPU's features more than on anything one
can read off it: OpenVINO runs its matmuls in bf16 where the CPU has AVX512-BF16 or AMX and in fp32
elsewhere; torch's bf16 is fast only where bf16 is native and slow where it is emulated; int8 helps where
int8 dot products (VNNI) are fast. So the first time ``auto`` is resolved for a model on a kind of CPU,
every mode that exists here (:data:`~embeddings.quantize.QUANTIZE_MODES`: OpenVINO where it runs, and
torch's fp32, bf16 and int8) runs the same small workload, each in a child process of its own (so the
server never holds two models, nor imports torch for nothing), and the fastest whose vectors are within
:data:`MIN_COSINE` of fp32's is chosen:

* the workload: 8 questions (Chinese and English) encoded one at a time, and 16 passages (sentences
  of a document, with their title) in one call; the best of :data:`REPEATS` runs after a warm-up run,
  questions and passages summed; the assumed mode goes first, and a mode whose warm-up run alone takes
  :data:`GIVE_UP` times the best figure so far stops there (fp32 torch is several times slower than
  OpenVINO: its warm-up run still gives the reference vectors);
* the mode ``auto`` meant before it measured (OpenVINO where it runs) stays unless another is at least
  15 % faster (:data:`MARGIN`);
* the result, every mode's figures and cosine, is kept in ``<model folder>.quantize-auto.json`` beside
  the model folder, under the CPU's signature (:func:`~embeddings.cpu.cpu_signature`: model name and
  feature flags), the weights' sha256, the sentence-vector setting and the thread count; a copy of the
  cache on another kind of CPU measures again. Delete the file to measure again.

Measuring takes about a minute (loading each model, converting the bf16 copy, whose folder is removed
again when bf16 is not chosen), once; processes that start together wait for the one measuring (a lock
file). Where no mode could be measured, ``auto`` falls back to the old rule: OpenVINO where it runs,
else bf16 where bf16 is native, else int8.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .cpu import cpu_description, cpu_signature
from .quantize import assumed_mode

log = logging.getLogger(__name__)

VERSION = 1  # of the workload and the rule: a change measures again
REPEATS = 3
MIN_COSINE = 0.98  # least cosine of a mode's vectors to fp32's on the workload's texts (int8 torch: ~0.99)
MEASURE_TIMEOUT_S = 900.0
# Another mode than the assumed one (:func:`~embeddings.quantize.assumed_mode`, what auto meant before it
# measured) is chosen only when it takes at most this share of the assumed one's time: a measurement on a
# busy machine must not move a service to other vectors (caches and data folders are per mode) for a few
# per cent.
MARGIN = 0.85
GIVE_UP = 3.0  # a mode whose warm-up run takes this many times the best figure so far stops there (cannot win)

QUESTIONS = [
    "上海创智学院有多少研究生和导师？", "Where is the Shanghai Innovation Institute?",
    "黑豹队的防守丢了多少分？", "How many points did the Panthers defense give up?",
    "光合作用产生什么？", "What does photosynthesis produce in the leaves of a plant?",
    "明朝是哪一年灭亡的", "When did the Ming dynasty end?",
]
PASSAGES = [
    "The Panthers defense gave up just 308 points, ranking sixth in the league.",
    "They also led the NFL in interceptions with 24, and boasted four Pro Bowl selections.",
    "Pro Bowl defensive tackle Kawann Short led the team in sacks with 11, while also forcing three fumbles.",
    "黑豹队的防守只丢了308分，在联赛中排名第六。",
    "他们还以24次拦截领先全联盟，并且四次入选职业碗。",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "光合作用把光能转化为储存在葡萄糖中的化学能。",
    "The Ming dynasty ruled China from 1368 to 1644, following the collapse of the Mongol-led Yuan dynasty.",
    "明朝从1368年到1644年统治中国。",
    "Shanghai is the largest city in China by population, with more than 24 million inhabitants.",
    "上海是中国人口最多的城市，常住人口超过两千四百万。",
    "The institute admits about 500 graduate students a year and has over 100 supervisors.",
    "研究院每年招收约500名研究生，有100多名导师。",
    "The river flows east for 6,300 kilometres before it reaches the East China Sea near Shanghai.",
    "长江向东流淌6300公里，在上海附近注入东海。",
    "The tower was completed in 2015 and is 632 metres tall.",
]
PASSAGE_TITLE = "Measuring"


def cache_file(folder: Path) -> Path:
    folder = Path(folder)
    return folder.parent / f"{folder.name}.quantize-auto.json"


def measured_mode(folder: Path, *, openvino: bool = True, threads: int = 2) -> str | None:
    """The mode ``auto`` means for the model in ``folder`` on this CPU: the remembered choice, else measured
    now (see the module docstring); ``None`` when no mode could be measured. ``openvino=False`` (contextual
    sentence vectors) leaves OpenVINO out."""
    from .fetch import folder_digests

    folder = Path(folder)
    digest = folder_digests(folder, ["model.safetensors"])["model.safetensors"]
    if digest is None:
        return None
    key = f"{cpu_signature()}|{digest[:16]}|{'openvino' if openvino else 'torch'}|threads={threads}|v{VERSION}"
    path = cache_file(folder)
    found = _read(path).get(key)
    if found:
        return found["mode"]
    with _locked(path.with_name(path.name + ".lock")):
        found = _read(path).get(key)  # another process may have measured while this one waited
        if found:
            return found["mode"]
        result = measure_modes(folder, candidates=candidates(openvino), threads=threads)
        if result["mode"] is None:
            return None
        result.update({"cpu": cpu_description()[0], "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        _write(path, {**_read(path), key: result})
        return result["mode"]


def candidates(openvino: bool = True) -> list[str]:
    """The modes measured: fp32 first (the reference for the others' vectors), then every reduced one."""
    from .quantize import QUANTIZE_MODES, openvino_available

    return [m for m in QUANTIZE_MODES if m != "openvino" or (openvino and openvino_available())]


def measure_modes(folder: Path, *, candidates: list[str], threads: int = 2) -> dict:
    """Every mode of ``candidates`` on the workload, each in a child process; the fastest whose vectors are
    at :data:`MIN_COSINE` or more of fp32's (``"none"``, measured when it is among the candidates)."""
    from .fetch import folder_digests

    digest = folder_digests(folder, ["model.safetensors"])["model.safetensors"] or ""
    bf16_copy = Path(folder).parent / f"{Path(folder).name}@{digest[:8]}.bf16"
    bf16_existed = bf16_copy.exists()
    figures: dict[str, dict] = {}
    vectors: dict[str, np.ndarray] = {}
    assumed = assumed_mode("openvino" in candidates)
    order = sorted(candidates, key=lambda m: m != assumed)  # the likely winner first: it sets the others' budget
    log.info("QA_QUANTIZE=auto: measuring %s on this CPU (once; about a minute)", ", ".join(order))
    for mode in order:
        timed = [f["seconds"] for f in figures.values() if "seconds" in f and not f.get("stopped")]
        budget = GIVE_UP * min(timed) if timed else 0.0
        try:
            out = _measure_in_child(folder, mode, threads, budget)
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            figures[mode] = {"error": str(exc)[-400:]}
            log.warning("QA_QUANTIZE=auto: %s could not be measured: %s", mode, str(exc)[-400:])
            continue
        vectors[mode] = np.asarray(out.pop("vectors"), dtype=np.float32)
        figures[mode] = out
    reference = vectors.get("none")
    for mode, v in vectors.items():
        if reference is not None and v.shape == reference.shape:
            figures[mode]["min_cosine_to_fp32"] = round(float(np.min(np.sum(v * reference, axis=1))), 5)
    mode = choose(figures, assumed)
    if mode != "bf16" and not bf16_existed and bf16_copy.exists():
        shutil.rmtree(bf16_copy, ignore_errors=True)  # made only to be measured
    log.info("QA_QUANTIZE=auto: %s (%s)", mode, ", ".join(
        f"{m} {f['seconds']:.2f} s" if "seconds" in f else f"{m} failed" for m, f in figures.items()))
    return {"mode": mode, "modes": figures, "workload": f"{len(QUESTIONS)} lone questions + {len(PASSAGES)} "
            f"passages in one call, best of {REPEATS}", "threads": threads}


def choose(figures: dict[str, dict], assumed: str) -> str | None:
    """The fastest mode of ``figures`` (each ``{"seconds", "min_cosine_to_fp32"?}``, or ``{"error"}``) whose
    vectors are at :data:`MIN_COSINE` of fp32's, unless the ``assumed`` mode is usable and the fastest does not
    take under :data:`MARGIN` of its time; ``None`` when none is usable."""
    usable = [m for m, f in figures.items() if "seconds" in f and f.get("min_cosine_to_fp32", 1.0) >= MIN_COSINE]
    if not usable:
        return None
    fastest = min(usable, key=lambda m: figures[m]["seconds"])
    if assumed in usable and figures[fastest]["seconds"] > MARGIN * figures[assumed]["seconds"]:
        return assumed  # not clearly faster: stay with the vectors auto meant before it measured
    return fastest


def _measure_in_child(folder: Path, mode: str, threads: int, budget_s: float = 0.0) -> dict:
    done = subprocess.run([sys.executable, "-m", "embeddings.auto_mode", str(folder), mode, str(threads),
                           str(budget_s)],
                          capture_output=True, text=True, timeout=MEASURE_TIMEOUT_S)
    if done.returncode != 0:
        raise OSError(f"exit {done.returncode}: {done.stderr.strip()[-600:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(folder: Path, mode: str, threads: int = 2, budget_s: float = 0.0) -> dict:
    """The workload on ``mode`` (run in the child): seconds (questions + passages, each the best of
    :data:`REPEATS`), both parts, and the vectors of the texts (for the cosine to fp32). A mode whose
    warm-up run takes more than ``budget_s`` (when given) cannot win: it stops there (``stopped``), with the
    warm-up's time as its figure."""
    from . import embedder_for_mode

    started = time.perf_counter()
    model = embedder_for_mode(folder, mode, threads=threads)
    load_s = time.perf_counter() - started
    titles = [PASSAGE_TITLE] * len(PASSAGES)

    def questions() -> np.ndarray:
        return np.vstack([model.encode_queries([q]) for q in QUESTIONS])

    def passages() -> np.ndarray:
        return model.encode_passages(PASSAGES, titles)

    out: dict[str, np.ndarray] = {}

    def run() -> dict[str, float]:
        seconds = {}
        for part, fn in (("questions", questions), ("passages", passages)):
            t0 = time.perf_counter()
            out[part] = fn()
            seconds[part] = time.perf_counter() - t0
        return seconds

    best = run()  # the warm-up run
    stopped = bool(budget_s) and sum(best.values()) > budget_s
    if not stopped:
        runs = [run() for _ in range(REPEATS)]
        best = {part: min(r[part] for r in runs) for part in best}
    return {"seconds": round(best["questions"] + best["passages"], 4), "questions_s": round(best["questions"], 4),
            "passages_s": round(best["passages"], 4), "load_s": round(load_s, 2), "model_id": model.model_id,
            "stopped": stopped, "vectors": np.vstack([out["questions"], out["passages"]]).round(6).tolist()}


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write(path: Path, data: dict) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:  # a read-only model folder: measured again next time
        log.warning("QA_QUANTIZE=auto: could not keep the choice in %s: %s", path, exc)
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on ``path`` (created), or no lock where it cannot be created."""
    try:
        fh = open(path, "a+")
    except OSError:
        yield
        return
    try:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield
    finally:
        fh.close()


if __name__ == "__main__":  # the child: python -m embeddings.auto_mode <folder> <mode> <threads>
    logging.basicConfig(level="WARNING")
    print(json.dumps(measure(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))))
