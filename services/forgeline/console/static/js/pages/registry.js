// Registry: models, a model's versions and alias history, a version with its files,
// metadata, reports and lineage graph.

import {api} from "../api.js";
import {h, fill, badge, table, link, bytes, num, when} from "../dom.js";
import {lineageGraph} from "../charts.js";

const versionLink = (ref) => link(`/registry/versions/${encodeURIComponent(ref)}`, ref);

export async function showModels(view) {
  const data = await api("/api/models");
  fill(view, h("h1", {}, "Registry"),
    data.models.length ? table(["model", "latest", "aliases", "tags", "created"], data.models.map((m) => [
      link(`/registry/models/${encodeURIComponent(m.name)}`, m.name),
      m.latest_version ? versionLink(`${m.name}:${m.latest_version}`) : "",
      Object.entries(m.aliases).map(([a, v]) => `${a} → ${v}`).join(", "),
      m.tags.join(", "), when(m.create_time)]), {id: "models"}) : h("p", {class: "muted"}, "No models yet."));
}

export async function showModel(view, name) {
  const data = await api(`/api/models/${encodeURIComponent(name)}`);
  fill(view, h("h1", {}, name), data.model.description ? h("p", {}, data.model.description) : null,
    h("section", {class: "card"}, h("h2", {}, "Versions"),
      table(["version", "kind", "state", "size", "files", "aliases", "parents", "created"], data.versions.map((v) => [
        versionLink(v.ref), v.kind, badge(v.state), bytes(v.total_bytes), v.file_count, v.aliases.join(", "),
        v.parents.map(versionLink), when(v.create_time)]))),
    h("section", {class: "card"}, h("h2", {}, "Alias history"),
      data.alias_history.length ? table(["alias", "moved to", "from", "by", "when"], data.alias_history.map((e) => [
        e.alias, e.version ? versionLink(`${name}:${e.version}`) : "deleted",
        e.previous_version ? versionLink(`${name}:${e.previous_version}`) : "new", e.actor, when(e.time)]), {id: "alias-history"})
        : h("p", {class: "muted"}, "No alias has pointed anywhere yet.")));
}

export async function showVersion(view, ref) {
  const [data, lineage] = await Promise.all([
    api(`/api/versions/${encodeURIComponent(ref)}`),
    api(`/api/versions/${encodeURIComponent(ref)}/lineage`),
  ]);
  const v = data.version;
  const kv = (obj) => Object.keys(obj).length
    ? table(["key", "value"], Object.entries(obj).map(([k, x]) => [k, typeof x === "number" ? num(x) : x]))
    : h("p", {class: "muted"}, "None.");
  const go = (target) => { history.pushState({}, "", `/registry/versions/${encodeURIComponent(target)}`); showVersion(view, target); };
  fill(view,
    h("h1", {}, link(`/registry/models/${encodeURIComponent(v.model)}`, v.model), `:${v.number} `, badge(v.state), " ", h("span", {class: "kind"}, v.kind)),
    h("p", {}, v.description, v.aliases.length ? ` — aliases: ${v.aliases.join(", ")}` : ""),
    v.failure_reason ? h("p", {class: "error"}, v.failure_reason) : null,
    h("section", {class: "card"}, h("h2", {}, "Lineage"), h("p", {class: "muted"}, "Click a version to follow it."),
      h("div", {class: "graph"}, lineageGraph(lineage, go))),
    h("div", {class: "columns"},
      h("section", {class: "card"}, h("h2", {}, "Facts"), table(["", ""], [
        ["kind", v.kind], ["size", bytes(v.total_bytes)], ["files", v.file_count], ["created", when(v.create_time)],
        ["job", v.job_id || "upload"], ["parents", v.parents.map(versionLink)]])),
      h("section", {class: "card"}, h("h2", {}, "Metadata"), kv(v.metadata)),
      h("section", {class: "card"}, h("h2", {}, "Metrics"), kv(v.metrics))),
    h("section", {class: "card"}, h("h2", {}, "Evaluations"),
      data.evaluations.length ? table(["suite", "metrics", "samples", "when"], data.evaluations.map((e) => [
        e.suite, Object.entries(e.metrics).map(([k, x]) => `${k} ${num(x)}`).join(", "), e.num_samples, when(e.create_time)]))
        : h("p", {class: "muted"}, "No reports."),
      link(`/evaluations?a=${encodeURIComponent(v.ref)}`, "Compare and promote…")),
    h("section", {class: "card"}, h("h2", {}, "Files"),
      table(["path", "size", "sha256"], data.files.map((f) => [f.path, bytes(f.size), h("code", {}, f.sha256.slice(0, 16))]))));
}
