"""`lab web`: the running lab in a browser, live — the picture `lab graph` draws, the walk `lab trace`
follows, the table `lab netpol matrix` measures, the exercise's tasks — and, with --allow-actions,
node stop/start and fault add/clear.

Pure parts with unit tests: `view` (the JSON the page gets), `admission` (who may ask what: the
Host and Origin checks, the token, the actions admitted with their arguments). `server` is thin: the
standard library's ThreadingHTTPServer, a watcher of the lab's record, server-sent events. `static/`
holds the page, its script and style: every asset is served by the server itself.
"""
