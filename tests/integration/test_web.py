"""lab web in a real browser against a real lab: headless Chromium (Debian's chromium and
chromium-driver, driven by selenium) opens the page of `lab web` serving a small lab and must find
what the lab has — every node and pod in the DOM, NotReady within 3 s of `lab node stop` without a
reload, the walk of a trace drawn after clicking two pods, the policy table equal to `lab netpol
matrix -o json` — and must have loaded nothing from outside the machine.

One lab and one browser for the module (two nodes, host-gw, four pods, no cluster DNS): ~20 s.
LAB_WEB_SCREENSHOTS=1 writes the screenshots of docs/img/ (web.png, web-policy.png)."""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import pytest

from tests.integration.conftest import ROOT, lab, needs_root, wait_for

pytestmark = [needs_root, pytest.mark.root]
LAB = "webit"
SHOTS = ROOT / "docs" / "img"
TOPO = """
name: webit
cluster: {network: host-gw, dns: {enabled: false}}
nodes: [{name: n1}, {name: n2}]
hosts: [{name: outside}]
manifests:
  - apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web}
    spec:
      replicas: 2
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec: {containers: [{name: web, image: netexec, ports: [{containerPort: 8080}]}]}
  - apiVersion: v1
    kind: Pod
    metadata: {name: db, labels: {app: db}}
    spec: {containers: [{name: db, image: netexec, ports: [{containerPort: 8080}]}]}
  - apiVersion: v1
    kind: Pod
    metadata: {name: client, labels: {app: client}}
    spec: {nodeName: n2, containers: [{name: client, image: netexec, ports: [{containerPort: 8080}]}]}
  - apiVersion: v1
    kind: Service
    metadata: {name: web}
    spec: {type: NodePort, selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: db-from-web}
    spec:
      podSelector: {matchLabels: {app: db}}
      policyTypes: [Ingress]
      ingress: [{from: [{podSelector: {matchLabels: {app: web}}}]}]
"""


def _driver():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium: scripts/install.sh installs python3-selenium")
    from selenium.webdriver.chrome.service import Service

    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not browser or not driver:
        pytest.fail("chromium and chromium-driver are not installed: scripts/install.sh (make install) installs them")
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1500,1900",
                "--no-first-run", "--disable-background-networking", "--disable-extensions"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=opts)


@pytest.fixture(scope="module")
def browser():
    b = _driver()
    yield b
    b.quit()


@contextmanager
def web(name: str, *args: str, env: Optional[dict] = None):
    """`lab web --port 0` on lab `name`: its URL, the server stopped after."""
    server = subprocess.Popen([sys.executable, "-m", "lab", "web", "--lab", name, "--port", "0", *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                              env={**os.environ, **(env or {})})
    try:
        first = server.stdout.readline()
        url = re.search(r"http://\S+/", first)
        assert url, f"lab web said {first!r} {server.stderr.read() if server.poll() is not None else ''}"
        yield url.group(0)
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def page(browser, tmp_path_factory):
    """(browser, url) on a running lab served with --allow-actions; the lab taken down after."""
    topo = tmp_path_factory.mktemp("web") / "webit.yaml"
    topo.write_text(TOPO)
    try:
        lab("up", str(topo))
        with web(LAB, "--allow-actions") as url:
            browser.get(url)
            yield browser, url
    finally:
        lab("down", LAB, check=False)


def js(browser, script: str, *args):
    return browser.execute_script(script, *args)


def until(browser, script: str, timeout: float, *args):
    """The script's value once it is truthy, polled every 50 ms (None at the timeout)."""
    return wait_for(lambda: js(browser, script, *args), timeout=timeout)


def shot(browser, name: str) -> None:
    if os.environ.get("LAB_WEB_SCREENSHOTS"):
        SHOTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SHOTS / name))


def test_the_dom_names_every_node_and_pod(page):
    browser, _ = page
    pods = json.loads(lab("get", "pods", "-o", "json", "--lab", LAB).stdout)["items"]
    keys = sorted(f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in pods)
    assert until(browser, "return document.querySelectorAll('#pods tr[data-pod]').length", 5) == len(keys)
    listed = js(browser, "return [...document.querySelectorAll('#pods tr[data-pod]')].map(t => t.dataset.pod)")
    assert sorted(listed) == keys
    drawn = js(browser, "return [...document.querySelectorAll('#picture g.box')].map(g => g.dataset.keys)")
    assert set(keys) <= set(drawn)                       # each pod has its box on the picture
    nodes = js(browser, "return Object.fromEntries([...document.querySelectorAll('#nodes tr[data-node]')]"
                        ".map(t => [t.dataset.node, t.querySelector('.status').textContent]))")
    assert nodes == {"n1": "Ready", "n2": "Ready"}
    text = js(browser, "return document.body.innerText")
    assert all(p["status"]["podIP"] in text for p in pods)


def test_the_page_loads_nothing_from_outside(page):
    browser, url = page
    loaded = js(browser, "return [location.href, ...performance.getEntriesByType('resource').map(e => e.name)]")
    assert len(loaded) >= 4, loaded                      # the page, its script, its style, the event stream
    outside = [u for u in loaded if not u.startswith(url)]
    assert outside == [], outside


def test_clicking_two_pods_draws_their_trace(page, tmp_path_factory):
    browser, _ = page
    db, web = "default/db", next(k for k in js(browser, "return [...document.querySelectorAll('#pods tr[data-pod]')]"
                                                        ".map(t => t.dataset.pod)") if "/web-" in k)
    for key in (db, web):
        browser.find_element("css selector", f'#picture g.box[data-keys="{key}"] rect').click()
    boxes = until(browser, "const w = document.querySelector('#picture path.walk'); return w && w.dataset.boxes", 30)
    status = js(browser, "return document.getElementById('trace-status').textContent")
    assert boxes, status
    ids = js(browser, "return [arguments[0], arguments[1]]"
                      ".map(k => document.querySelector(`#picture g.box[data-keys=\"${k}\"]`).dataset.id)", db, web)
    assert ids[0] in boxes.split() and ids[1] in boxes.split(), (boxes, ids)
    rows = js(browser, "return [...document.querySelectorAll('#trace-table tr[data-step]')].map(t => t.innerText)")
    assert len(rows) >= 5 and "answered" in status and "error" not in status, (status, rows)
    shot(browser, "web.png")
    _the_pcap_link_downloads_the_walks_capture(browser, tmp_path_factory.mktemp("pcap") / "walk.pcap")


def _the_pcap_link_downloads_the_walks_capture(browser, out: Path) -> None:
    """The link after the walk: its bytes (fetched as the link fetches them, with the page's token) are a
    pcap that tcpdump reads, holding the probe's SYN; without the token the server refuses."""
    assert js(browser, "return !document.getElementById('trace-pcap').hidden")
    url = js(browser, "return document.getElementById('trace-pcap-link').dataset.url")
    got = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const token = document.querySelector('meta[name=\"lab-token\"]').content;"
        "Promise.all([fetch(arguments[0], {headers: {'X-Lab-Token': token}}), fetch(arguments[0])])"
        ".then(async ([r, bare]) => done([r.status, r.headers.get('Content-Disposition'), bare.status,"
        " btoa(String.fromCharCode(...new Uint8Array(await r.arrayBuffer())))]))", url)
    status, disposition, bare, data = got
    assert status == 200 and "attachment" in disposition and bare == 403, got[:3]
    out.write_bytes(base64.b64decode(data))
    read = subprocess.run(["tcpdump", "-r", str(out), "-nn"], capture_output=True, text=True)
    assert read.returncode == 0 and "Flags [S]" in read.stdout, read.stderr


def test_the_policy_table_matches_lab_netpol_matrix(page):
    browser, _ = page
    browser.find_element("css selector", "#policy-form button").click()
    assert until(browser, "return document.querySelectorAll('#policy td.cell').length", 30), \
        js(browser, "return document.getElementById('policy-status').textContent")
    seen = js(browser, "return [...document.querySelectorAll('#policy td.cell')].map(c => [c.dataset.src, c.dataset.dst, "
                       "+c.dataset.port, c.dataset.protocol, c.dataset.expected, c.dataset.observed])")
    proc = lab("netpol", "matrix", "-o", "json", "--lab", LAB, check=False)
    m = json.loads(proc.stdout)
    want = sorted([c["src"], c["dst"], c["port"], c["protocol"], c["expected"] or "", c["observed"]] for c in m["cells"])
    assert sorted(seen) == want
    assert {c[5] for c in seen} == {"allowed", "denied"}   # the policy denies some: the table can tell them apart
    js(browser, "document.getElementById('policy-panel').scrollIntoView()")
    shot(browser, "web-policy.png")


def test_node_stop_shows_not_ready_within_3s_without_a_reload(page):
    browser, _ = page
    js(browser, "window.notReloaded = true")
    status = "return document.querySelector('#nodes tr[data-node=\"n2\"] .status').textContent"
    t0 = time.monotonic()
    lab("node", "stop", "n2", "--lab", LAB)
    assert until(browser, status + " === 'NotReady'", 3.0), js(browser, status)
    took = time.monotonic() - t0
    assert js(browser, "return window.notReloaded === true")
    assert js(browser, "return document.querySelector('#picture g.cluster[data-node=\"n2\"]').classList.contains('stopped')")
    print(f"NotReady on the page {took:.2f}s after lab node stop began")
    # the page's own action brings it back (the token it got, --allow-actions)
    # (by script: each snapshot redraws the table, so a found element may be replaced before a click lands)
    assert js(browser, "const b = document.querySelector('#nodes tr[data-node=\"n2\"] button[data-action=\"node-start\"]');"
                       "b && b.click(); return !!b")
    assert until(browser, status + " === 'Ready'", 15), js(browser, "return document.getElementById('action-status').textContent")
    n2 = next(line for line in lab("get", "nodes", "--lab", LAB).stdout.splitlines() if line.startswith("n2 "))
    assert n2.split()[1] == "Ready", n2


BIG = """
name: webbig
cluster: {network: vxlan, dns: {enabled: false}}
nodes: [{name: n1}, {name: n2}, {name: n3}, {name: n4}, {name: n5}]
manifests:
  - apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web}
    spec:
      replicas: 1000
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec: {containers: [{name: web, image: netexec, ports: [{containerPort: 8080}]}]}
"""


def test_a_thousand_pods_are_grouped_and_painted_within_a_second(browser, tmp_path, monkeypatch):
    """The page of a 1000-pod lab's record (planned, not built: the page reads only the record, and
    building 1000 pods costs 2 GB and 20 s), in a run folder of its own."""
    from lab.controlplane.plan import plan
    from lab.host import record
    from lab.topology.load import load_topology_text

    monkeypatch.setattr(record, "RUN_ROOT", tmp_path)
    state = plan(load_topology_text(BIG))
    rec = record.LabRecord.create(state)
    rec.status, rec.pod_ready = "running", {p.key: True for p in state.pods}
    rec.save()
    with web("webbig", env={"K8S_NETLAB_RUN": str(tmp_path)}) as url:
        browser.get(url)
        assert until(browser, "return document.querySelectorAll('#pods tr[data-pod]').length === 1000", 10)
        painted = int(js(browser, "return document.body.dataset.firstPaint"))
        groups = js(browser, "return document.querySelectorAll('#picture g.box.group').length")
        notes = js(browser, "return document.getElementById('notes').textContent")
    print(f"1000 pods: first paint {painted} ms after navigation, {groups} groups")
    assert groups == 5 and "grouped per node and owner" in notes
    assert painted <= 1000, f"first paint {painted} ms after navigation"


def test_ingresses_are_drawn_with_their_rules(browser, tmp_path, monkeypatch):
    """The page of topologies/ingress.yaml's record (planned, not built: the picture reads only the
    record): the Ingress's box, and an arrow from it to each Service its rules route to."""
    from lab.controlplane.plan import plan
    from lab.host import record
    from lab.topology.load import load_topology_text

    monkeypatch.setattr(record, "RUN_ROOT", tmp_path)
    state = plan(load_topology_text((ROOT / "topologies" / "ingress.yaml").read_text()))
    rec = record.LabRecord.create(state)
    rec.status, rec.pod_ready = "running", {p.key: True for p in state.pods}
    rec.save()
    with web(state.lab, env={"K8S_NETLAB_RUN": str(tmp_path)}) as url:
        browser.get(url)
        box = until(browser, "const b = document.querySelector('#picture g.box.ingress'); return b && b.textContent", 10)
        routes = js(browser, "return document.querySelectorAll('#picture path.link.route').length")
        labels = js(browser, "return [...document.querySelectorAll('#picture text.link-label')].map(t => t.textContent)")
        shot(browser, "web-ingress.png")
    assert box and "ingress web" in box and "shop.example (TLS)" in box, box
    assert routes == 2 and "shop.example/, default backend" in labels, (routes, labels)
