"""Drive headless Chromium (Debian's chromium + chromium-driver, through Selenium) through
the gateway's admin page: sign in by Kerberos SSO, impersonate a user with the page's
form, look at what the backend sees, stop.

    browser_impersonate.py BASE_URL TARGET REASON PROFILE_DIR

The ticket cache comes from KRB5CCNAME/KRB5_CONFIG in the environment. Prints one JSON
object: each step's page text or the backend's echo, for the Rust test to check. Exits
non-zero (with the page so far on stderr) when an element is missing."""

import json
import os
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

# Bound on each wait for a page to show what a step expects (a form post is a 401
# round trip plus a redirect; slow on a loaded machine).
WAIT_SECONDS = 30


def text(driver):
    return driver.find_element(By.TAG_NAME, "body").text


def echo(driver, url):
    driver.get(url)
    body = text(driver)
    try:
        return json.loads(body[body.index("{") : body.rindex("}") + 1])
    except ValueError:
        raise SystemExit(f"not the backend's echo at {url}:\n{body}")


def header(echoed, name):
    for n, v in echoed.get("headers", []):
        if n.lower() == name:
            return v
    return None


def main():
    base, target, reason, profile = sys.argv[1:5]
    with open(os.path.join(profile, "Local State"), "w") as f:
        # A brand-new profile ignores the first Negotiate challenge without this.
        json.dump({"net": {"received_http_auth_negotiate_headers": True}}, f)
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("IWA_TEST_CHROMIUM", "/usr/bin/chromium")
    for flag in [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--no-proxy-server",
        "--auth-server-allowlist=localhost",
        f"--user-data-dir={profile}",
    ]:
        opts.add_argument(flag)
    service = Service(executable_path=os.environ.get("IWA_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(options=opts, service=service)
    driver.set_page_load_timeout(30)
    out = {}
    try:
        driver.get(base + "/.iwa/")
        out["page_before"] = text(driver)
        driver.find_element(By.ID, "user").send_keys(target)
        driver.find_element(By.ID, "reason").send_keys(reason)
        driver.find_element(By.ID, "start").click()
        # The click starts a navigation (POST, 303, GET); wait for its result.
        WebDriverWait(driver, WAIT_SECONDS).until(
            EC.presence_of_element_located((By.ID, "impersonating"))
        )
        out["url_after_start"] = driver.current_url
        out["page_acting"] = text(driver)
        out["banner"] = driver.find_element(By.ID, "impersonating").text
        seen = echo(driver, base + "/app/report")
        out["acting_user"] = header(seen, "x-remote-user")
        out["acting_impersonator"] = header(seen, "x-remote-impersonator")
        out["acting_sid"] = header(seen, "x-remote-user-sid")
        out["acting_groups"] = header(seen, "x-remote-groups")
        driver.get(base + "/.iwa/")
        driver.find_element(By.ID, "stop").click()
        # Back on the page without the banner: the form to start is offered again.
        WebDriverWait(driver, WAIT_SECONDS).until(
            EC.presence_of_element_located((By.ID, "start"))
        )
        out["page_after_stop"] = text(driver)
        seen = echo(driver, base + "/app/after")
        out["after_user"] = header(seen, "x-remote-user")
        out["after_impersonator"] = header(seen, "x-remote-impersonator")
    except Exception as e:  # report what the browser showed
        try:
            page = text(driver)
        except Exception:
            page = "(no page)"
        print(json.dumps(out), file=sys.stderr)
        raise SystemExit(f"{type(e).__name__}: {e}\n--- page ---\n{page}")
    finally:
        driver.quit()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
