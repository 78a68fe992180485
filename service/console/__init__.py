"""The web console (docs/spec.md §8): static pages served by the API at `/console/`, every asset local.

Plain ES modules and CSS, no build step and no CDN; the pages call the same JSON API as any client, with
the bearer token the operator logged in with. `router.py` serves them with the security headers.
"""
