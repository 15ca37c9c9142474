// Starts Swagger UI on /docs. A file rather than an inline <script>, so the page's CSP can be
// script-src 'self'. Settings come from data- attributes of #swagger-ui, written by the server
// (modelserve/http/docs_pages.py); the options are FastAPI's defaults for its own /docs.
"use strict";
(function () {
  var root = document.getElementById("swagger-ui");
  var data = root.dataset;
  var options = {
    url: data.openapiUrl,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    // Swagger UI's default would send the spec to validator.swagger.io: nothing leaves the server.
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  };
  if (data.oauth2RedirectUrl) {
    options.oauth2RedirectUrl = window.location.origin + data.oauth2RedirectUrl;
  }
  window.ui = SwaggerUIBundle(options);
})();
