// Starts Swagger UI on /docs: an external script, because the page's CSP allows no inline one.
// The OpenAPI document's address comes from the page (data-url), as FastAPI serves it.
"use strict";
window.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.url,
    dom_id: "#swagger-ui",
    deepLinking: true,
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis],
  });
});
