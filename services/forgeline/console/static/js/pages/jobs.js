// Jobs: the list with filters, and one job live (progress, loss curve, logs, outputs).

import {api} from "../api.js";
import {h, fill, badge, table, link, num, when} from "../dom.js";
import {lossCurve} from "../charts.js";

const KINDS = ["training", "quantization", "evaluation"];
const STATES = ["queued", "running", "succeeded", "failed", "cancelled"];

export async function showList(view) {
  const params = new URLSearchParams(location.search);
  const kind = h("select", {name: "kind"}, h("option", {value: ""}, "all kinds"), KINDS.map((k) => h("option", {value: k}, k)));
  const state = h("select", {name: "state"}, h("option", {value: ""}, "any state"), STATES.map((s) => h("option", {value: s}, s)));
  kind.value = params.get("kind") || "";
  state.value = params.get("state") || "";
  const body = h("div", {id: "job-list"});
  const load = async () => {
    const query = new URLSearchParams({kind: kind.value, state: state.value});
    history.replaceState({}, "", `/jobs?${query}`);
    const data = await api(`/api/jobs?${query}`);
    fill(body,
      data.unavailable.length ? h("p", {class: "error"}, `not answering: ${data.unavailable.join(", ")}`) : null,
      data.jobs.length ? table(["job", "kind", "state", "progress", "loss", "submitted", "outputs"],
        data.jobs.map((j) => [link(`/jobs/${j.kind}/${encodeURIComponent(j.id)}`, j.id), j.kind, badge(j.state),
          `${Math.round(j.progress * 100)}%`, j.metrics.loss !== undefined ? num(j.metrics.loss) : "",
          when(j.create_time), j.outputs.map((o) => link(`/registry/versions/${encodeURIComponent(o)}`, o))]),
        {class: "jobs"}) : h("p", {class: "muted"}, "No jobs."));
  };
  kind.addEventListener("change", load);
  state.addEventListener("change", load);
  fill(view, h("h1", {}, "Jobs"), h("div", {class: "filters"}, kind, state, link("/submit", "New training job")), body);
  await load();
  const timer = setInterval(() => load().catch(() => {}), 5000);
  return () => clearInterval(timer);
}

export async function showJob(view, kind, id) {
  const data = await api(`/api/jobs/${kind}/${encodeURIComponent(id)}`);
  const job = data.job;
  const state = h("span", {id: "job-state"}, badge(job.state));
  const bar = h("progress", {id: "job-progress", max: 1, value: job.progress});
  const stepText = h("span", {id: "job-step", class: "muted"});
  const metricsText = h("span", {id: "job-metrics", class: "muted"});
  const chart = h("div", {class: "chart"}, lossCurve([]));
  const logs = h("pre", {id: "job-logs", class: "logs"});
  const error = h("p", {class: "error", id: "job-error", role: "alert"}, job.error);
  const outputs = h("div", {id: "job-outputs"});
  const cancel = h("button", {type: "button", id: "cancel", class: "danger"}, "Cancel job");
  const showOutputs = (versions) => fill(outputs, versions.length
    ? table(["version", "kind", "state", "size"], versions.map((v) => [link(`/registry/versions/${encodeURIComponent(v.ref)}`, v.ref), v.kind, badge(v.state), v.total_bytes ? `${v.file_count} files` : ""]))
    : h("p", {class: "muted"}, "None yet."));
  showOutputs(data.outputs);
  cancel.hidden = ["succeeded", "failed", "cancelled"].includes(job.state);
  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try { await api(`/api/jobs/${kind}/${encodeURIComponent(id)}/cancel`, {method: "POST"}); }
    catch (err) { error.textContent = err.message; cancel.disabled = false; }
  });
  fill(view,
    h("h1", {}, `${kind} job `, h("code", {}, id), " ", state),
    h("section", {class: "card"}, h("div", {class: "row"}, bar, stepText, metricsText, cancel), error),
    kind === "training" ? h("section", {class: "card"}, h("h2", {}, "Loss"), chart) : null,
    h("section", {class: "card"}, h("h2", {}, "Registered versions"), outputs),
    h("section", {class: "card"}, h("h2", {}, "Log"), logs),
    h("section", {class: "card"}, h("h2", {}, "Spec"), h("pre", {id: "job-spec"}, data.job_file || JSON.stringify(data.spec, null, 2))));

  // Replayed from the first event, then live: the curve is drawn from the events alone.
  const losses = new Map();
  let redraw = 0;
  const draw = () => {
    redraw = 0;
    const points = [...losses].map(([step, loss]) => ({step, loss})).sort((a, b) => a.step - b.step);
    fill(chart, lossCurve(points));
  };
  const source = new EventSource(`/api/jobs/${kind}/${encodeURIComponent(id)}/events`);
  source.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (event.type === "progress") {
      bar.value = event.fraction;
      stepText.textContent = `step ${event.step}/${event.total_steps || "?"}`;
    } else if (event.type === "metrics") {
      // Step 0 carries the job's final metrics (its result's), not a training step.
      if (event.values.loss !== undefined && event.step > 0) {
        losses.set(event.step, event.values.loss);
        redraw ||= requestAnimationFrame(draw);
      }
      metricsText.textContent = Object.entries(event.values).filter(([k]) => ["loss", "tokens_per_second", "accuracy"].includes(k))
        .map(([k, v]) => `${k} ${num(v)}`).join("  ");
    } else if (event.type === "log") {
      logs.append(`${event.time ? event.time.slice(11, 19) : ""} ${event.message}\n`);
      logs.scrollTop = logs.scrollHeight;
    } else if (event.type === "state") {
      fill(state, badge(event.state));
      cancel.hidden = ["succeeded", "failed", "cancelled"].includes(event.state);
      if (event.reason) error.textContent = event.reason;
    }
  };
  const finish = async () => {
    source.close();
    const done = await api(`/api/jobs/${kind}/${encodeURIComponent(id)}`).catch(() => null);
    if (done) {
      fill(state, badge(done.job.state));
      error.textContent = done.job.error;
      showOutputs(done.outputs);
      bar.value = done.job.state === "succeeded" ? 1 : bar.value;
    }
    state.dataset.ended = "1";
  };
  source.addEventListener("end", finish);
  source.addEventListener("failure", (m) => { error.textContent = JSON.parse(m.data).message; finish(); });
  return () => source.close();
}
