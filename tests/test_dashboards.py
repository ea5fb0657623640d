"""Latent dashboards in a real browser: a small random model's run gets its pages (nbs/16_dashboards), and headless
Chromium, driven by Selenium through Debian's chromium driver, opens the index, sorts it, follows a link, finds the
contexts and the histogram drawn, and logs nothing to the console. Skips, naming the install command, where there is
no browser (`make setup` installs one as root with apt-get)."""
import os, shutil
import pytest
from conftest import make_model

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("SE_OFFLINE", "true")      # Selenium Manager must not try to download a browser or a driver

RUN = dict(hook_layer=2, context_size=32, n_train_tokens=4096, n_heldout_tokens=1024, shard_tokens=2048, d_sae=64, k=4,
           batch_size=256, train_steps=8, n_cycles=1, dead_tokens=1024, transfer_ks=[4], checkpoint_every=100,
           dash_core=6, dash_sample=3)
INSTALL = "as root: apt-get install chromium chromium-driver; then `make install` (selenium)"


def browser():
    "A headless Chromium under Selenium, recording the console; skips when there is none."
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip(f"selenium is not installed: {INSTALL}")
    if not (chromium and driver): pytest.skip(f"no headless browser (chromium and chromedriver): {INSTALL}")
    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,900"):
        opts.add_argument(a)
    opts.binary_location = chromium
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=opts)


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    "The pages of a one-cycle run of a small random Llama (SmolLM2's tokenizer), and their index rows."
    import pytest as _pytest
    from conftest import shared_home
    from dmsae.config import dmsae_home, get_config
    from dmsae.data import build_embedded_corpus
    from dmsae.dashboards import write_dashboards
    from dmsae.distill import distill, transfer
    from dmsae.model import convert_embedded_model, load_lm
    build_embedded_corpus()
    convert_embedded_model()
    tmp = tmp_path_factory.mktemp("dash")
    mp = _pytest.MonkeyPatch()
    mp.setenv("DMSAE_HOME", str(shared_home(tmp / "home", dmsae_home())))
    cfg = get_config("tiny", model_name=make_model(tmp / "model", "llama"), **RUN)
    lm = load_lm(cfg.model_name)
    distill(cfg, lm, run_dir=tmp / "run", progress=False)
    transfer(cfg, methods=("dmsae", "matryoshka"), lm=lm, run_dir=tmp / "run", progress=False)
    rows = write_dashboards(tmp / "run", cfg, lm, out=tmp / "latents", progress=False)
    yield tmp / "latents", rows
    mp.undo()


def test_pages_render_in_a_browser(pages):
    from selenium.webdriver.common.by import By
    out, rows = pages
    assert {r["group"] for r in rows} == {"core", "first group", "later"}
    drv = browser()
    try:
        drv.get((out / "index.html").as_uri())
        trs = drv.find_elements(By.CSS_SELECTOR, "#latents tbody tr")
        assert len(trs) == len(rows)
        heads = [th.text for th in drv.find_elements(By.CSS_SELECTOR, "#latents th")]
        col = heads.index("firing rate")
        def column():
            cells = drv.find_elements(By.CSS_SELECTOR, f"#latents tbody tr td:nth-child({col + 1})")
            return [float(c.get_attribute("data-v")) for c in cells]
        drv.find_elements(By.CSS_SELECTOR, "#latents th")[col].click()         # sorts, largest first
        assert column() == sorted(column(), reverse=True) and len(set(column())) > 1
        drv.find_elements(By.CSS_SELECTOR, "#latents th")[col].click()         # and back, smallest first
        assert column() == sorted(column())
        link = drv.find_element(By.CSS_SELECTOR, "#latents tbody tr a")
        name = link.get_attribute("href").rsplit("/", 1)[-1]
        link.click()
        assert drv.current_url.endswith(name) and "latent" in drv.title
        contexts = drv.find_elements(By.CSS_SELECTOR, "div.ctx")
        assert contexts and all(c.is_displayed() for c in contexts)
        assert drv.find_elements(By.CSS_SELECTOR, "div.ctx span.here")         # the example token is marked
        bars = drv.find_elements(By.CSS_SELECTOR, "svg.hist rect")
        assert bars and max(b.size["height"] for b in bars) > 50               # drawn, tallest bar at full height
        assert drv.find_elements(By.XPATH, "//h2[text()='Twins in the other SAEs of the run']")
        drv.find_element(By.LINK_TEXT, "all latents").click()
        assert drv.current_url.endswith("index.html")
        errors = [e for e in drv.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
        assert not errors, errors
    finally:
        drv.quit()
