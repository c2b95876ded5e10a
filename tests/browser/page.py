"""The page of `atelier serve` in headless Chromium, as a person uses it: open it, upload a
photo, pick a style, wait for the result, then upload a painting as the style and wait again.
Checks that each displayed result is a real stylization (its pixels differ from the photo's,
its size matches; the painting's differs from the style's too) and that the page fits a
phone's width, saves screenshots (desktop.png, phone.png) to --out and prints a JSON report as
its last line. Run by tests/serve.rs against a server on a loopback port.
"""

import argparse
import json
import os
import shutil
import struct
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

# Draws both images at the result's natural size and returns their mean absolute difference
# per channel, with both natural sizes, and the difference to the result it compared last time
# (null the first time; -1 when the sizes differ).
COMPARE_JS = """
const result = document.getElementById('result');
const original = document.getElementById('original');
const w = result.naturalWidth, h = result.naturalHeight;
const canvas = document.createElement('canvas');
canvas.width = w; canvas.height = h;
const context = canvas.getContext('2d', { willReadFrequently: true });
context.drawImage(result, 0, 0, w, h);
const a = context.getImageData(0, 0, w, h).data;
context.drawImage(original, 0, 0, w, h);
const b = context.getImageData(0, 0, w, h).data;
const difference = (x, y) => {
  let total = 0, n = 0;
  for (let i = 0; i < x.length; i += 4) {
    total += Math.abs(x[i] - y[i]) + Math.abs(x[i + 1] - y[i + 1]) + Math.abs(x[i + 2] - y[i + 2]);
    n += 3;
  }
  return total / n;
};
const previous = window.atelierLastResult;
const toPrevious = previous === undefined ? null
  : previous.length === a.length ? difference(a, previous) : -1;
window.atelierLastResult = a;
return {
  result: [w, h], original: [original.naturalWidth, original.naturalHeight],
  diff: difference(a, b), diff_to_previous: toPrevious,
};
"""


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        sys.exit(f"{path} is not a PNG")
    return list(struct.unpack(">II", head[16:24]))


def browser(binary):
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which(binary) or binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,1180",
                     "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(argument)
    driver_path = shutil.which("chromedriver")
    if driver_path is None:
        sys.exit("chromedriver is missing (Debian: apt-get install chromium-driver)")
    return webdriver.Chrome(service=Service(executable_path=driver_path), options=options)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--photo", required=True)
    parser.add_argument("--browser", default="chromium")
    parser.add_argument("--style", default="7")
    parser.add_argument("--painting", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if not args.url.startswith(("http://127.", "http://localhost", "http://[::1]")):
        sys.exit("only loopback servers are tested")

    driver = browser(args.browser)
    try:
        wait = WebDriverWait(driver, 90, poll_frequency=0.1)
        driver.get(args.url + "/")
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#styles .style")) >= 26)

        driver.find_element(By.ID, "file").send_keys(os.path.abspath(args.photo))
        wait.until(ec.visibility_of_element_located((By.ID, "original")))
        driver.find_element(By.CSS_SELECTOR, f'#styles .style[data-id="{args.style}"]').click()
        wait.until(lambda d: d.find_element(By.ID, "result-label").text == f"Style {args.style}"
                   and d.find_element(By.ID, "result-box").get_attribute("data-state") == "done")
        status = driver.find_element(By.ID, "status").text
        compared = driver.execute_script(COMPARE_JS)
        selected = driver.find_element(By.CSS_SELECTOR, '#styles .style[aria-selected="true"]')
        selected_style = selected.get_attribute("data-id")

        # A painting of one's own as the style (the arbitrary-style network).
        driver.find_element(By.ID, "style-file").send_keys(os.path.abspath(args.painting))
        wait.until(lambda d: d.find_element(By.ID, "result-label").text == "Your painting"
                   and d.find_element(By.ID, "result-box").get_attribute("data-state") == "done")
        painted = driver.execute_script(COMPARE_JS)
        painting_status = driver.find_element(By.ID, "status").text
        still_selected = driver.find_elements(By.CSS_SELECTOR, '#styles .style[aria-selected="true"]')

        # Let the style previews on the photo finish (bounded), so the screenshot is complete.
        deadline = time.monotonic() + 60
        previews_js = ("return [...document.querySelectorAll('#styles img')]"
                       ".every(i => i.complete && i.naturalWidth > 0)")
        while time.monotonic() < deadline and not driver.execute_script(previews_js):
            time.sleep(0.2)
        time.sleep(1.0)
        driver.save_screenshot(f"{args.out}/desktop.png")

        driver.set_window_size(390, 844)
        time.sleep(0.5)
        overflow = driver.execute_script(
            "return document.documentElement.scrollWidth - window.innerWidth")
        driver.save_screenshot(f"{args.out}/phone.png")
    finally:
        driver.quit()

    expected = png_size(args.photo)
    report = {
        "status": status,
        "selected_style": selected_style,
        "result_size": compared["result"],
        "expected_size": expected,
        "original_size": compared["original"],
        "mean_difference": compared["diff"],
        "painting_status": painting_status,
        "painting_result_size": painted["result"],
        "painting_mean_difference": painted["diff"],
        "painting_difference_to_style": painted["diff_to_previous"],
        "phone_overflow_px": overflow,
    }
    problems = []
    if compared["result"] != expected:
        problems.append("the result's size differs from the photo's")
    if compared["diff"] <= 10:
        problems.append("the result looks like the photo: not stylized")
    if report["selected_style"] != args.style:
        problems.append("the clicked style is not the selected one")
    if painted["result"] != expected:
        problems.append("the painting's result differs from the photo in size")
    if painted["diff"] <= 10:
        problems.append("the painting's result looks like the photo: not stylized")
    if painted["diff_to_previous"] is None or painted["diff_to_previous"] <= 10:
        problems.append("the painting's result looks like the style's: the painting was not used")
    if still_selected:
        problems.append("a style in the grid stays selected beside the painting")
    if overflow > 1:
        problems.append(f"the page is {overflow} px wider than a phone")
    print(json.dumps(report))
    if problems:
        sys.exit("; ".join(problems))


if __name__ == "__main__":
    main()
