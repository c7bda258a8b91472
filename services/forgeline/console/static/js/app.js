// The console's one page: login, then a router over the pages by path.

import {api, hooks, ApiError} from "./api.js";
import {h, fill} from "./dom.js";
import * as jobs from "./pages/jobs.js";
import * as registry from "./pages/registry.js";
import * as evaluations from "./pages/evaluations.js";
import * as serving from "./pages/serving.js";
import * as submit from "./pages/submit.js";

const view = document.getElementById("view");
const nav = document.getElementById("nav");
let leave = null; // closes what the current page keeps open (event streams)

const routes = [
  [/^\/jobs\/(training|quantization|evaluation)\/([^/]+)$/, (m) => jobs.showJob(view, m[1], decodeURIComponent(m[2]))],
  [/^\/(jobs)?$/, () => jobs.showList(view)],
  [/^\/registry$/, () => registry.showModels(view)],
  [/^\/registry\/models\/([^/]+)$/, (m) => registry.showModel(view, decodeURIComponent(m[1]))],
  [/^\/registry\/versions\/([^/]+)$/, (m) => registry.showVersion(view, decodeURIComponent(m[1]))],
  [/^\/evaluations$/, () => evaluations.show(view)],
  [/^\/serving$/, () => serving.show(view)],
  [/^\/submit$/, () => submit.show(view)],
];

async function route() {
  if (leave) { leave(); leave = null; }
  const path = location.pathname;
  for (const a of nav.querySelectorAll("a")) {
    a.classList.toggle("active", path.startsWith(`/${a.dataset.page}`) || (path === "/" && a.dataset.page === "jobs"));
  }
  for (const [pattern, show] of routes) {
    const match = path.match(pattern);
    if (match) {
      fill(view, h("p", {class: "muted"}, "Loading…"));
      try {
        leave = (await show(match)) || null;
      } catch (err) {
        if (err instanceof ApiError && err.status === 401) return;
        fill(view, h("p", {class: "error", role: "alert"}, err.message));
      }
      return;
    }
  }
  fill(view, h("p", {class: "error"}, "No such page."));
}

/** Follows in-page links without reloading. */
document.addEventListener("click", (event) => {
  const a = event.target.closest("a");
  if (!a || a.target || a.origin !== location.origin || event.ctrlKey || event.metaKey) return;
  event.preventDefault();
  if (a.pathname !== location.pathname) history.pushState({}, "", a.pathname + a.search);
  route();
});
window.addEventListener("popstate", route);

function showLogin() {
  if (leave) { leave(); leave = null; }
  nav.hidden = true;
  const form = document.getElementById("login-template").content.firstElementChild.cloneNode(true);
  fill(view, form);
  form.querySelector("#token").focus();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api("/api/login", {method: "POST", body: {token: form.querySelector("#token").value}});
      nav.hidden = false;
      route();
    } catch (err) {
      form.querySelector("#login-error").textContent = err.message;
    }
  });
}

hooks.unauthenticated = showLogin;

document.getElementById("logout").addEventListener("click", async () => {
  await api("/api/logout", {method: "POST"}).catch(() => {});
  showLogin();
});

api("/api/session").then(() => { nav.hidden = false; route(); }, showLogin);
