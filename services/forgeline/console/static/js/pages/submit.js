// Submit: the training form. It builds the job the CLI would (the server uses the CLI's
// own code), shows the trainer's plan and memory estimate, the equivalent command line
// and job file, and puts each refused field's reason beside that field.

import {api} from "../api.js";
import {h, fill, bytes} from "../dom.js";

const NUMBERS = [
  ["max_steps", "max steps", "1"], ["epochs", "epochs", "1"], ["learning_rate", "learning rate", "any"],
  ["batch_size", "batch size", "1"], ["grad_accum", "gradient accumulation", "1"],
  ["max_seq_len", "max sequence length", "1"], ["lora_rank", "LoRA rank", "1"], ["warmup_steps", "warm-up steps", "1"],
  ["seed", "seed", "1"],
];

export async function show(view) {
  const choices = await api("/api/submit/choices");
  const fields = {};
  const slot = (name, label, input) => {
    fields[name] = input;
    input.name = name;
    input.id = `f-${name}`;
    return h("label", {class: "field", "data-field": name}, label, input, h("span", {class: "field-error", id: `e-${name}`}));
  };
  const options = (list, blank) => [blank ? h("option", {value: ""}, blank) : null, ...list.map((x) => h("option", {value: x}, x))];
  const refs = (id, list) => h("datalist", {id}, list.map((v) => h("option", {value: v.ref}, v.kind.toLowerCase())));
  const form = h("form", {id: "train-form", class: "card"},
    h("div", {class: "grid"},
      slot("task", "task", h("select", {}, options(choices.tasks))),
      slot("model", "base model", h("input", {list: "model-refs", required: true, placeholder: "e.g. smollm2-135m-instruct:1"})),
      slot("dataset", "dataset", h("input", {list: "dataset-refs", required: true, placeholder: "a DATASET version"})),
      slot("eval_dataset", "held-out dataset", h("input", {list: "dataset-refs", placeholder: "optional"})),
      slot("output", "output name", h("input", {placeholder: "<model>-<task>"})),
      slot("tuner", "tuner", h("select", {}, options(choices.choices.tuner, "default"))),
      slot("precision", "precision", h("select", {}, options(choices.choices.precision, "default"))),
      slot("lr_scheduler", "LR schedule", h("select", {}, options(choices.choices.lr_scheduler, "default"))),
      NUMBERS.map(([name, label, step]) => slot(name, label, h("input", {type: "number", step}))),
      slot("label", "labels", h("input", {placeholder: "KEY=VALUE, ..."}))),
    refs("model-refs", choices.models), refs("dataset-refs", choices.datasets),
    h("div", {class: "row"}, h("button", {type: "button", id: "preview"}, "Plan"), h("button", {type: "submit", id: "submit"}, "Submit")),
    h("p", {class: "error", id: "form-error", role: "alert"}));
  const plan = h("section", {class: "card", id: "plan"});
  const values = () => {
    const out = {};
    for (const [name, input] of Object.entries(fields)) if (input.value !== "") out[name] = input.value;
    return out;
  };
  const showProblems = (err) => {
    for (const el of form.querySelectorAll(".field-error")) el.textContent = "";
    form.querySelector("#form-error").textContent = err ? err.message : "";
    for (const v of (err && err.violations) || []) {
      const slotError = form.querySelector(`#e-${CSS.escape(v.field)}`);
      if (slotError) slotError.textContent = v.description;
      else form.querySelector("#form-error").append(h("div", {}, `${v.field}: ${v.description}`));
    }
  };
  const preview = async () => {
    showProblems(null);
    try {
      const p = await api("/api/submit/preview", {method: "POST", body: values()});
      if (p.problems.length) showProblems({message: "the trainer would refuse this job", violations: p.problems});
      const m = p.plan.memory_per_worker;
      fill(plan, h("h2", {}, "Plan"),
        p.problems.length ? null : h("p", {id: "memory"}, `Memory per worker: ${bytes(m.total_bytes)} (weights ${bytes(m.weights_bytes)}, gradients ${bytes(m.gradients_bytes)}, optimizer ${bytes(m.optimizer_bytes)}, activations ${bytes(m.activations_bytes)}, allocator ${bytes(m.allocator_bytes)}); `,
          `${p.plan.total_steps} steps over ${p.plan.num_examples} examples, ${p.plan.strategy}.`),
        p.warnings.map((w) => h("p", {class: "muted"}, w)),
        h("h3", {}, "Command line"), h("pre", {id: "cli-line"}, p.command_line),
        h("h3", {}, "Job file"), h("pre", {id: "job-yaml"}, p.job_file));
      return p;
    } catch (err) {
      showProblems(err);
      return null;
    }
  };
  form.querySelector("#preview").addEventListener("click", preview);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const p = await preview();
    if (!p || p.problems.length) return;
    try {
      const r = await api("/api/submit", {method: "POST", body: values()});
      history.pushState({}, "", `/jobs/training/${encodeURIComponent(r.job.id)}`);
      window.dispatchEvent(new PopStateEvent("popstate"));
    } catch (err) {
      showProblems(err);
    }
  });
  fill(view, h("h1", {}, "New training job"), form, plan);
}
