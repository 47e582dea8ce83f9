"""The browser fixtures of test_dashboard (Chromium, a seeded site) for every page's tests."""

from tests.web.test_dashboard import browser, site

__all__ = ["browser", "site"]
