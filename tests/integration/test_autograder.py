"""A Gradescope run, simulated: the package built by `lab exercise package`, extracted into the
/autograder layout under a temporary root (AUTOGRADER_ROOT), its own setup.sh run once and its own
run_autograder run per submission. The reference solution scores full marks; each hostile
submission of the cheat corpus scores no more than an empty one, and no process of the student
outlives run_autograder. (docs/INSTRUCTORS.md: the threat model.)"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from lab import host
from lab.exercise import model, package
from tests.integration.conftest import needs_root, reference_submission

pytestmark = [needs_root, pytest.mark.root, pytest.mark.exercises]

DATA = Path(__file__).resolve().parents[1] / "data" / "exercises"
NAME = "hgw"
TIMEOUT = 8  # the package's submission timeout: a fork bomb or a sleeper runs this long

# Each cheat is a solution.sh; {root} is the autograder root, which a student knows (/autograder).
CHEATS = {
    "run any solution file found": """
        for f in $(find / -xdev \\( -name 'solution*.sh' -o -name '*reference*' \\) -type f 2>/dev/null); do
          bash "$f" || true
        done
        find / -xdev -name exercise.yaml 2>/dev/null | xargs -r cat
    """,
    "call lab exercise solve": """
        lab exercise solve; lab exercise solve -e {name}
        {root}/source/k8s-netlab/.venv/bin/lab exercise solve -e {name}
        python3 -m lab exercise solve -e {name}
    """,
    "rewrite the spec": """
        for f in {root}/source/k8s-netlab/tests/data/exercises/{name}/exercise.yaml \\
                 /run/k8s-netlab/exercises/sealed/{name}/exercise.yaml $(find / -xdev -name exercise.yaml 2>/dev/null); do
          printf 'title: free marks\\nlevel: beginner\\ntopology: topology.yaml\\ntasks: []\\n' > "$f" 2>/dev/null || true
        done
        spec={root}/source/k8s-netlab/tests/data/exercises/{name}/exercise.yaml
        lab exec -l "$LAB" node/node1 -- sh -c "echo 'tasks: []' > $spec"
    """,
    "a pod that runs a program as root": """
        lab apply -f - <<'EOF'
        apiVersion: v1
        kind: Pod
        metadata: {{name: evil}}
        spec:
          containers:
            - name: c
              image: netexec
              command: [sh, -c, "while :; do echo '{{\\"score\\": 99}}' > {root}/results/results.json; sleep 0.05; done"]
        EOF
    """,
    "rewrite results.json from a daemon": """
        cat > "$HOME/forge.sh" <<'EOF'
        while :; do mkdir -p {root}/results; echo '{{"score": 99, "tests": []}}' > {root}/results/results.json; sleep 0.05; done
        EOF
        setsid nohup bash "$HOME/forge.sh" >/dev/null 2>&1 < /dev/null &
        lab exec -l "$LAB" node/node1 -- setsid nohup sh -c \\
            'while :; do echo "{{\\"score\\": 99}}" > {root}/results/results.json; sleep 0.05; done' >/dev/null 2>&1 &
        sleep 1
    """,
    "kill the grader's processes": """
        kill -9 -1 2>/dev/null
        for p in /proc/[0-9]*; do kill -9 "${{p#/proc/}}" 2>/dev/null; done
        lab exec -l "$LAB" node/node1 -- sh -c 'kill -9 -1; pkill -9 -f lab; pkill -9 python3' || true
    """,
    "brute-force an answer": """
        for v in eth0 eth1 cni0 lo node1 wrong; do
          out=$(lab exercise answer which "$v" 2>&1; lab exercise check 2>&1; lab exercise status 2>&1)
          if echo "$out" | grep -qiE 'correct|right|✓ answer|is the answer'; then found=$v; break; fi
        done
        lab exercise answer which "${{found:-wrong}}"
    """,
    "fill /tmp": """
        dd if=/dev/zero of=/tmp/fill bs=1M count=2000 2>/dev/null
        dd if=/dev/zero of=/dev/shm/fill bs=1M count=2000 2>/dev/null
        dd if=/dev/zero of="$HOME/fill" bs=1M count=2000 2>/dev/null
        dd if=/dev/zero of=/var/tmp/fill bs=1M count=2000 2>/dev/null
        true
    """,
    "a fork bomb": """
        bomb() {{ bomb | bomb & }}; bomb
    """,
}


def install(root: Path, folder: Path, user: str, timeout: float = TIMEOUT) -> None:
    """The package of one exercise extracted into the autograder root (the previous one's source
    replaced, its virtualenv kept: setup.sh is then quick) and set up as Gradescope does."""
    zip_path = root.parent / f"{folder.name}.zip"
    package.build(model.load(folder), zip_path, timeout=timeout, user=user)
    source = root / "source"
    if (source / "k8s-netlab").is_dir():
        for entry in (source / "k8s-netlab").iterdir():
            if entry.name != ".venv":
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(source)
        for info in z.infolist():  # zipfile drops the modes: restore the executable bits
            mode = info.external_attr >> 16
            if mode:
                os.chmod(source / info.filename, mode)
    done = subprocess.run(["bash", str(source / "setup.sh")], env={**os.environ, "AUTOGRADER_ROOT": str(root)},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("autograder")


@pytest.fixture
def autograder(root: Path, student: str):
    """The package for the test exercise, extracted and set up as Gradescope does."""
    install(root, DATA / NAME, student)
    yield root
    lab = root / "source" / "k8s-netlab" / ".venv" / "bin" / "lab"
    subprocess.run([str(lab), "exercise", "stop", "-e", NAME], env={**os.environ, "AUTOGRADER_ROOT": str(root)},
                   capture_output=True, timeout=60)


def grade(root: Path, script: str, user: str, files: Path | None = None) -> dict:
    """Run run_autograder on a submission whose solution.sh is `script` (with `files`' contents
    beside it); its results.json."""
    sub = root / "submission"
    shutil.rmtree(sub, ignore_errors=True)
    if files:
        shutil.copytree(files, sub)
    else:
        sub.mkdir()
    (sub / "solution.sh").write_text(script)
    results = root / "results" / "results.json"
    results.unlink(missing_ok=True)
    done = subprocess.run([str(root / "source" / "run_autograder")], env={**os.environ, "AUTOGRADER_ROOT": str(root)},
                          capture_output=True, text=True, timeout=180, cwd=root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not host.live_processes(pwd.getpwnam(user).pw_uid), "a student process outlived run_autograder"
    return json.loads(results.read_text())


def test_the_reference_solution_scores_full_marks_and_an_empty_one_nothing(autograder: Path, student: str):
    honest = grade(autograder, (DATA / NAME / "solution.sh").read_text(), student)
    assert honest["score"] == 14, json.dumps(honest, indent=1)
    empty = grade(autograder, "true\n", student)
    assert empty["score"] == 0, json.dumps(empty, indent=1)
    # what the student reads before the due date: no hidden test's content, no answer's verdict
    shown = [t for t in honest["tests"] if t["visibility"] == "visible"]
    assert all("secret-probe" not in t["name"] + t["output"] for t in honest["tests"])
    assert not [t for t in shown if t["name"].endswith(": answer")]


@pytest.mark.parametrize("cheat", CHEATS, ids=lambda c: c.replace(" ", "-"))
def test_a_cheat_scores_no_more_than_an_empty_submission(autograder: Path, cheat: str, student: str):
    script = "\n".join(line[8:] if line.startswith(" " * 8) else line
                       for line in CHEATS[cheat].format(root=autograder, name=NAME).splitlines())
    t0 = time.monotonic()
    result = grade(autograder, script, student)
    assert result["score"] == 0, f"{cheat}: {json.dumps(result, indent=1)}"
    assert "tests" in result and len(result["tests"]) == 4, result
    time.sleep(0.5)  # a daemon that survived would rewrite the results now
    assert json.loads((autograder / "results" / "results.json").read_text()) == result
    assert time.monotonic() - t0 < TIMEOUT + 60
    leftovers = [p for p in ("/tmp/fill", "/dev/shm/fill", "/var/tmp/fill") if os.path.exists(p)]
    assert not leftovers, leftovers


@pytest.mark.parametrize("folder", model.folders(model.default_dir()), ids=lambda p: p.name)
def test_every_exercise_packaged_gives_its_reference_solution_full_marks(root: Path, folder: Path, tmp_path: Path,
                                                                          student: str):
    """The student's package of each exercise (no solution inside), its reference solution
    submitted to run_autograder as a student would: full marks, and nothing of it left running."""
    install(root, folder, student, timeout=120)
    submission = reference_submission(folder, tmp_path)
    result = grade(root, (folder / "solution.sh").read_text(), student, files=submission)
    maximum = sum(t["max_score"] for t in result["tests"])
    assert result["score"] == pytest.approx(maximum) and all(t["status"] == "passed" for t in result["tests"]), \
        json.dumps(result, indent=1)
