// Evaluations: a version's reports, two versions compared subject by subject, and
// promotion through the evaluation gate (its refusal shown as the registry says it).

import {api} from "../api.js";
import {h, fill, table, num, when} from "../dom.js";

export async function show(view) {
  const params = new URLSearchParams(location.search);
  const a = h("input", {name: "a", placeholder: "version, e.g. law-qa:2", value: params.get("a") || ""});
  const b = h("input", {name: "b", placeholder: "compare with, e.g. law-qa@production", value: params.get("b") || ""});
  const reports = h("div", {id: "reports"});
  const comparison = h("div", {id: "comparison"});
  const load = async () => {
    history.replaceState({}, "", `/evaluations?${new URLSearchParams({a: a.value, b: b.value})}`);
    fill(reports); fill(comparison);
    if (!a.value) return;
    try {
      const data = await api(`/api/versions/${encodeURIComponent(a.value)}`);
      fill(reports, h("h2", {}, `Reports of ${data.version.ref}`), data.evaluations.length
        ? data.evaluations.map((e) => h("div", {class: "report"},
          h("h3", {}, `${e.suite} `, h("span", {class: "muted"}, `${e.num_samples} items, ${when(e.create_time)}`)),
          table(["metric", "value"], Object.entries(e.metrics).map(([k, x]) => [k, num(x)])),
          Object.keys(e.subjects).length ? table(["subject", "score", "items"], Object.entries(e.subjects).map(([k, x]) => [k, num(x), e.subject_samples[k] ?? ""])) : null))
        : h("p", {class: "muted"}, "No reports."));
      if (b.value) {
        const c = await api(`/api/compare?${new URLSearchParams({a: a.value, b: b.value})}`);
        const delta = (d) => d === null ? "–" : h("span", {class: d > 0 ? "up" : d < 0 ? "down" : ""}, (d > 0 ? "+" : "") + num(d));
        fill(comparison, h("h2", {}, `${c.a} → ${c.b}`), c.suites.length ? c.suites.map((s) => h("div", {class: "report"},
          h("h3", {}, s.suite),
          table(["metric", c.a, c.b, "change"], s.metrics.map((m) => [m.metric, num(m.a), num(m.b), delta(m.delta)])),
          table(["subject", c.a, c.b, "change"], s.subjects.map((m) => [m.subject, num(m.a), num(m.b), delta(m.delta)]), {class: "subjects"})))
          : h("p", {class: "muted"}, "No suite was run on both."));
      }
    } catch (err) {
      fill(reports, h("p", {class: "error"}, err.message));
    }
  };

  const alias = h("input", {name: "alias", value: "production", required: true});
  const suite = h("input", {name: "suite", placeholder: "gate suite, e.g. mmlu (empty: no gate)"});
  const metric = h("input", {name: "metric", value: "accuracy"});
  const tolerance = h("input", {name: "tolerance", type: "number", step: "any", min: 0, value: 0});
  const minimum = h("input", {name: "minimum", type: "number", step: "any", placeholder: "none"});
  const outcome = h("div", {id: "promotion", role: "status"});
  const promote = h("form", {class: "card", id: "promote"},
    h("h2", {}, "Promote the version"),
    h("div", {class: "grid"}, h("label", {}, "alias", alias), h("label", {}, "suite", suite), h("label", {}, "metric", metric),
      h("label", {}, "tolerance", tolerance), h("label", {}, "minimum", minimum)),
    h("button", {type: "submit"}, "Promote through the gate"), outcome);
  promote.addEventListener("submit", async (event) => {
    event.preventDefault();
    fill(outcome, h("p", {class: "muted"}, "asking the registry…"));
    const body = {alias: alias.value, suite: suite.value, metric: metric.value, tolerance: Number(tolerance.value || 0)};
    if (minimum.value !== "") body.minimum = Number(minimum.value);
    try {
      const r = await api(`/api/versions/${encodeURIComponent(a.value)}/promote`, {method: "POST", body});
      fill(outcome, h("p", {class: "ok"}, `${r.version.model}@${alias.value} → ${r.version.number}` + (r.previous_version ? ` (was ${r.previous_version})` : "")));
    } catch (err) {
      fill(outcome, h("div", {class: "refusal", role: "alert"}, h("strong", {}, err.code === "gate_refused" ? "The gate refused: " : "Refused: "),
        h("span", {class: "reason"}, err.message), err.violations.map((v) => h("div", {}, `${v.field}: ${v.description}`))));
    }
  });
  const pick = h("form", {class: "filters"}, a, b, h("button", {type: "submit"}, "Show"));
  pick.addEventListener("submit", (event) => { event.preventDefault(); load(); });
  fill(view, h("h1", {}, "Evaluations"), pick, reports, comparison, promote);
  await load();
}
