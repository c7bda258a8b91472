// Serving: what the inference service serves, deploy / undeploy, and a chat playground
// streaming through the gateway's OpenAI API.

import {api, postStream} from "../api.js";
import {h, fill, badge, table} from "../dom.js";

export async function show(view) {
  const list = h("div", {id: "served"});
  const error = h("p", {class: "error", role: "alert"});
  const modelSelect = h("select", {id: "chat-model", name: "model"});
  const load = async () => {
    const data = await api("/api/served");
    const ready = data.models.filter((m) => m.state === "ready").map((m) => m.name);
    const chosen = modelSelect.value;
    fill(modelSelect, ready.map((n) => h("option", {value: n}, n)));
    if (ready.includes(chosen)) modelSelect.value = chosen;
    fill(list, data.models.length ? table(["served as", "kind", "version", "state", "running", "follows", ""], data.models.map((m) => {
      const remove = h("button", {type: "button", class: "danger small"}, "Undeploy");
      remove.addEventListener("click", async () => {
        remove.disabled = true;
        try { await api(`/api/served/${encodeURIComponent(m.name)}`, {method: "DELETE"}); await load(); }
        catch (err) { error.textContent = err.message; remove.disabled = false; }
      });
      return [m.name, m.kind + (m.parent ? ` on ${m.parent}` : ""), m.ref, badge(m.state), m.running_requests,
        m.follows + (m.rollout_error ? ` (${m.rollout_error})` : ""), remove];
    })) : h("p", {class: "muted"}, "Nothing is served."));
  };
  const ref = h("input", {name: "ref", placeholder: "version, e.g. law-qa@production", required: true});
  const name = h("input", {name: "served_name", placeholder: "served name (optional)"});
  const deploy = h("form", {class: "filters", id: "deploy"}, ref, name, h("button", {type: "submit"}, "Deploy"));
  deploy.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "loading… (an engine takes a while to start)";
    try { await api("/api/served", {method: "POST", body: {ref: ref.value, served_name: name.value}}); error.textContent = ""; await load(); }
    catch (err) { error.textContent = err.message; }
  });

  const prompt = h("textarea", {id: "chat-prompt", rows: 3, placeholder: "Ask something…"});
  const answer = h("div", {id: "chat-answer", class: "answer", "aria-live": "polite"});
  const maxTokens = h("input", {id: "chat-max-tokens", type: "number", min: 1, max: 4096, value: 96});
  const status = h("span", {id: "chat-status", class: "muted"});
  let controller = null;
  const chat = h("form", {class: "card", id: "playground"},
    h("h2", {}, "Playground"), h("p", {class: "muted"}, "Streams through the gateway's /v1/chat/completions."),
    h("div", {class: "row"}, h("label", {}, "model ", modelSelect), h("label", {}, "max tokens ", maxTokens)),
    prompt, h("div", {class: "row"}, h("button", {type: "submit"}, "Send"), status), answer);
  chat.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (controller) controller.abort();
    controller = new AbortController();
    answer.textContent = "";
    answer.dataset.chunks = "0";
    status.textContent = "streaming…";
    chat.dataset.state = "streaming";
    const body = {model: modelSelect.value, messages: [{role: "user", content: prompt.value}],
      max_tokens: Number(maxTokens.value) || 96, temperature: 0};
    try {
      await postStream("/api/chat", body, (data) => {
        if (data === "[DONE]") return;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        const text = chunk.choices?.[0]?.delta?.content;
        if (text) {
          answer.append(text);
          answer.dataset.chunks = String(Number(answer.dataset.chunks) + 1);
        }
      }, controller.signal);
      status.textContent = "done";
    } catch (err) {
      if (err.name !== "AbortError") status.textContent = `error: ${err.message}`;
    }
    chat.dataset.state = "done";
  });
  fill(view, h("h1", {}, "Serving"), h("section", {class: "card"}, h("h2", {}, "Served models"), list, deploy, error), chat);
  await load();
  return () => controller && controller.abort();
}
