// Starts ReDoc on /redoc. A file rather than an inline <script>, so the page's CSP can be
// script-src 'self'. The spec URL comes from a data- attribute of #redoc, written by the
// server (modelserve/http/docs_pages.py).
"use strict";
(function () {
  var root = document.getElementById("redoc");
  Redoc.init(root.dataset.openapiUrl, {}, root);
})();
