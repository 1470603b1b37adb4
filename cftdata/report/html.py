"""The self-contained HTML page of ``cftdata inspect``: inline CSS, charts as base64 PNG data URIs.

No script, font, stylesheet or image is loaded from anywhere: a Content-Security-Policy meta tag
forbids it, so the page can be mailed, attached to an issue, or opened offline. Every piece of
dataset text goes through Jinja's autoescaping.
"""

from __future__ import annotations

import base64
from typing import Any

CSS = """
:root { --fg:#1f2933; --muted:#616e7c; --line:#e4e7eb; --bg:#f5f7fa; --accent:#3d7ea6;
        --good:#2e9e5b; --bad:#d1495b; --warn:#f0a202; }
* { box-sizing: border-box; }
body { margin:0; font: 14px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color:var(--fg); background:var(--bg); }
header { background:#1f2933; color:#fff; padding:22px 32px 18px; }
header h1 { margin:0 0 4px; font-size:22px; font-weight:600; }
header .sub { color:#cbd2d9; font-size:13px; }
header code { color:#fff; }
main { max-width:1180px; margin:0 auto; padding:20px 24px 48px; }
section { background:#fff; border:1px solid var(--line); border-radius:8px; padding:16px 20px; margin:18px 0; }
h2 { font-size:17px; margin:0 0 12px; font-weight:600; }
h3 { font-size:14px; margin:14px 0 6px; font-weight:600; }
.kpis { display:grid; grid-template-columns:repeat(auto-fill, minmax(160px, 1fr)); gap:12px; margin-top:18px; }
.kpi { background:#fff; border:1px solid var(--line); border-radius:8px; padding:12px 14px; }
.kpi .v { font-size:22px; font-weight:600; }
.kpi .l { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.kpi .s { color:var(--muted); font-size:12px; }
.grid2 { display:grid; grid-template-columns:repeat(auto-fit, minmax(420px, 1fr)); gap:18px; align-items:start; }
figure { margin:0; }
figure img { max-width:100%; height:auto; display:block; }
table { border-collapse:collapse; font-size:13px; margin:4px 0 8px; }
th, td { border-bottom:1px solid var(--line); padding:5px 10px; text-align:left; vertical-align:top; }
th { color:var(--muted); font-weight:600; background:#fafbfc; }
td.n, th.n { text-align:right; font-variant-numeric:tabular-nums; }
.muted { color:var(--muted); }
.note { color:var(--muted); font-size:12px; margin:6px 0 0; }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; font-weight:600;
         background:#e4e7eb; color:var(--fg); }
.badge.right, .badge.correct { background:#d6f0e0; color:#1d6b3d; }
.badge.wrong, .badge.incorrect { background:#f8dbe0; color:#9b2335; }
.agree td.cell { text-align:center; font-size:15px; min-width:130px; }
.agree td.ok { background:#e3f4ea; }
.agree td.ko { background:#fbe6ea; }
.sample { border:1px solid var(--line); border-radius:8px; margin:14px 0; overflow:hidden; }
.sample .head { background:#fafbfc; padding:8px 12px; border-bottom:1px solid var(--line); font-size:13px; }
.sample .head span { margin-right:12px; }
.sample .body { display:grid; grid-template-columns:1fr; gap:0; }
.sample .part { padding:8px 12px; border-top:1px solid var(--line); }
.sample .part:first-child { border-top:0; }
.sample .label { color:var(--muted); font-size:11px; text-transform:uppercase; letter-spacing:.05em; }
pre.text { white-space:pre-wrap; word-wrap:break-word; overflow-wrap:anywhere; margin:4px 0 0;
           font: 12.5px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
           max-height:420px; overflow-y:auto; }
.part.critique { background:#f7fbff; }
details summary { cursor:pointer; color:var(--accent); }
footer { color:var(--muted); font-size:12px; text-align:center; padding:12px; }
code { font: 12.5px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
"""

TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="cftdata {{ version }}">
<title>{{ name }} · cftdata build report</title>
<style>{{ css|safe }}</style>
</head>
<body>
<header>
  <h1>{{ name }} <span class="sub">· CFT build report</span></h1>
  <div class="sub">{% if description %}{{ description }}<br>{% endif %}
    <code>{{ path }}</code> · {{ status }} · built {{ created_at or "?" }}{% if seconds is not none %} in {{ seconds }} s{% endif %}
    · format <code>{{ format }}</code> · generator <code>{{ generator }}</code> · teacher <code>{{ teacher }}</code></div>
</header>
<main>
<div class="kpis">
{% for k in kpis %}  <div class="kpi"><div class="l">{{ k.label }}</div><div class="v">{{ k.value }}</div>{% if k.sub %}<div class="s">{{ k.sub }}</div>{% endif %}</div>
{% endfor %}</div>

<section id="stages">
  <h2>Counts per stage</h2>
  <div class="grid2">
    <figure>{{ img("stages") }}</figure>
    <div>
      <table>
        <tr><th>stage</th><th class="n">in</th><th class="n">out</th><th class="n">rejected</th><th class="n">seconds</th></tr>
        {% for s in stage_rows %}<tr><td>{{ s.name }}</td><td class="n">{{ s.in|num }}</td><td class="n">{{ s.out|num }}</td><td class="n">{{ s.rejected|num }}</td><td class="n">{{ s.seconds }}</td></tr>
        {% endfor %}
      </table>
      <p class="note">For each stage, in = out + rejected (times n for a respond stage sampling n responses per question).</p>
    </div>
  </div>
</section>

<section id="lengths">
  <h2>Lengths</h2>
  <div class="grid2">
    <figure>{{ img("critique_length") }}</figure>
    <figure>{{ img("response_length") }}</figure>
  </div>
  <table>
    <tr><th></th><th class="n">rows</th><th class="n">min</th><th class="n">p10</th><th class="n">median</th><th class="n">mean</th><th class="n">p90</th><th class="n">max</th></tr>
    {% for label, n, q in length_rows %}<tr><td>{{ label }}</td><td class="n">{{ n|num }}</td>{% if q %}<td class="n">{{ q.min|num }}</td><td class="n">{{ q.p10|num }}</td><td class="n">{{ q.p50|num }}</td><td class="n">{{ q.mean|num }}</td><td class="n">{{ q.p90|num }}</td><td class="n">{{ q.max|num }}</td>{% else %}<td colspan="6" class="muted">n/a</td>{% endif %}</tr>
    {% endfor %}
  </table>
</section>

<section id="verdicts">
  <h2>Teacher verdicts by source</h2>
  {% if verdict_groups %}
  <div class="grid2">
    <figure>{{ img("verdict_by_source") }}</figure>
    <div>
      <table>
        <tr><th>source</th><th class="n">rows</th>{% for c in verdict_cats %}<th class="n">{{ c }}</th>{% endfor %}<th class="n">right ratio</th></tr>
        {% for g in verdict_groups %}<tr><td>{{ g.name }}</td><td class="n">{{ g.total|num }}</td>{% for c in verdict_cats %}<td class="n">{{ g.counts.get(c, 0)|num }}</td>{% endfor %}<td class="n">{{ g.right_ratio }}</td></tr>
        {% endfor %}
      </table>
      <p class="note">right ratio = right / (right + wrong); rows with no "Conclusion: right/wrong" are unknown.</p>
    </div>
  </div>
  {% else %}<p class="muted">No verdict column in the data (provenance off, or no teacher).</p>{% endif %}
</section>

{% if agreement %}
<section id="agreement">
  <h2>Teacher verdict vs. verifier</h2>
  <div class="grid2">
  <div>
  <table class="agree">
    <tr><th>teacher says ↓ / verifier says →</th><th>correct</th><th>incorrect</th></tr>
    {% for v in ("right", "wrong") %}<tr><th>{{ v }}</th>{% for s in ("correct", "incorrect") %}{% set n = agreement.table.get(v ~ "/" ~ s, 0) %}<td class="cell {{ 'ok' if (v, s) in (('right','correct'),('wrong','incorrect')) else 'ko' }}"><b>{{ n|num }}</b>{% if agreement.decided %} <span class="muted">({{ (100.0 * n / agreement.decided)|round(1) }}%)</span>{% endif %}</td>{% endfor %}</tr>
    {% endfor %}
  </table>
  <p class="note">Agreement on decided rows: <b>{{ agreement.ratio }}</b> of {{ agreement.decided|num }}{% if agreement.undecided %}; {{ agreement.undecided|num }} rows undecided (verdict unknown or answer unverifiable){% endif %}.
  Green = teacher and verifier agree; red = the critique contradicts the verified answer{% if agreement.drop is not none %} (contradictions {{ "dropped" if agreement.drop else "kept" }}){% endif %}.{% if agreement.computed %} Computed from the data columns (the manifest has no agreement summary).{% endif %}</p>
  </div>
  {% if agreement.all %}<div>
    <h3>All combinations</h3>
    <table><tr><th>verdict / verifier</th><th class="n">rows</th></tr>
    {% for k, n in agreement.all %}<tr><td>{{ k }}</td><td class="n">{{ n|num }}</td></tr>{% endfor %}
    </table></div>{% endif %}
  </div>
</section>
{% endif %}

{% if family.by_pair %}
<section id="family">
  <h2>Per generator × teacher</h2>
  <table><tr><th>generator</th><th>teacher</th><th class="n">rows</th><th class="n">right</th><th class="n">wrong</th><th class="n">unknown</th><th class="n">right share</th><th class="n">critique tokens in / out</th><th class="n">critique cost</th></tr>
  {% for p in family.by_pair %}<tr><td><code>{{ p.generator }}</code></td><td><code>{{ p.teacher }}</code></td><td class="n">{{ p.rows|num }}</td><td class="n">{{ p.right|num }}</td><td class="n">{{ p.wrong|num }}</td><td class="n">{{ p.unknown|num }}</td><td class="n">{{ p.share }}</td><td class="n">{{ p.critique_input_tokens|num }} / {{ p.critique_output_tokens|num }}</td><td class="n">{{ p.cost }}</td></tr>{% endfor %}
  </table>
  <p class="note">Critiques that reached the verdict stage; model calls and cost per model are under Model usage.</p>
</section>
{% endif %}

{% if family.panel %}
<section id="panel">
  <h2>Teacher agreement</h2>
  <table><tr><th>teacher A</th><th>teacher B</th><th class="n">both decided</th><th class="n">agree</th><th class="n">agreement</th><th class="n">kappa</th></tr>
  {% for p in family.panel.pairwise %}<tr><td><code>{{ p.a }}</code></td><td><code>{{ p.b }}</code></td><td class="n">{{ p.both_decided|num }}</td><td class="n">{{ p.agree|num }}</td><td class="n">{{ p.agreement_pct }}</td><td class="n">{{ p.kappa if p.kappa is not none else "n/a" }}</td></tr>{% endfor %}
  </table>
  {% if family.panel.vs_verifier %}<table><tr><th>teacher</th><th class="n">decided</th><th class="n">agrees with the verifier</th><th class="n">agreement</th></tr>
  {% for v in family.panel.vs_verifier %}<tr><td><code>{{ v.teacher }}</code></td><td class="n">{{ v.decided|num }}</td><td class="n">{{ v.agree|num }}</td><td class="n">{{ v.agreement_pct }}</td></tr>{% endfor %}
  </table>{% endif %}
  <p class="note">Responses both teachers judged right or wrong; selection by agreement: <code>panel.keep: {{ family.panel.keep }}</code>.</p>
</section>
{% endif %}

{% if verify %}
<section id="verify">
  <h2>Answer verification</h2>
  <table><tr><th>status</th><th class="n">rows</th><th class="n">share</th></tr>
  {% for k, n, share in verify.rows %}<tr><td><span class="badge {{ k }}">{{ k }}</span></td><td class="n">{{ n|num }}</td><td class="n">{{ share }}</td></tr>{% endfor %}
  </table>
  {% if verify.extra %}<p class="note">{% for k, v in verify.extra %}{{ k }}: <code>{{ v }}</code> {% endfor %}</p>{% endif %}
</section>
{% endif %}

<section id="rejects">
  <h2>Rejects by reason</h2>
  {% if rejects %}
  <div class="grid2">
    <figure>{{ img("rejects") }}</figure>
    <div><table><tr><th>stage:reason</th><th class="n">rows</th><th>example detail</th></tr>
    {% for r in rejects %}<tr><td><code>{{ r.reason }}</code></td><td class="n">{{ r.count|num }}</td><td class="muted">{{ r.example|truncate(160) }}</td></tr>{% endfor %}
    </table>
    <p class="note">Every rejected row, with its stage, reason, detail and the row itself, is in <code>rejects.parquet</code>.</p></div>
  </div>
  {% else %}<p class="muted">No row was rejected.</p>{% endif %}
</section>

{% for q in quality %}
<section id="{{ q.key }}">
  <h2>{{ q.title }}</h2>
  <div class="grid2">
  <div><table><tr><th></th><th class="n">value</th></tr>
  {% for k, v in q.scalars %}<tr><td>{{ k }}</td><td class="n">{{ v }}</td></tr>{% endfor %}
  </table>
  {% for title, rows in q.tables %}<h3>{{ title }}</h3><table>{% for k, v in rows %}<tr><td>{{ k }}</td><td class="n">{{ v|num }}</td></tr>{% endfor %}</table>{% endfor %}
  </div>
  {% if q.removed %}<div><h3>Removed rows ({{ q.removed.count|num }})</h3>
    <table><tr><th>id</th><th>detail</th></tr>{% for r in q.removed.first %}<tr><td><code>{{ r.id }}</code></td><td class="muted">{{ (r.detail or "")|truncate(120) }}</td></tr>{% endfor %}</table>
    {% if q.removed.count > q.removed.first|length %}<p class="note">… and {{ (q.removed.count - q.removed.first|length)|num }} more (see rejects.parquet, stage {{ q.key }}).</p>{% endif %}
  </div>{% endif %}
  </div>
</section>
{% endfor %}

<section id="usage">
  <h2>Usage and cost</h2>
  {% if usage_rows %}
  <table>
    <tr><th>role</th><th>model</th><th class="n">requests</th><th class="n">model calls</th><th class="n">cache hits</th><th class="n">input tokens</th><th class="n">output tokens</th><th class="n">cost this run</th><th class="n">cost in all</th></tr>
    {% for u in usage_rows %}<tr><td>{{ u.role }}</td><td><code>{{ u.model }}</code></td><td class="n">{{ u.requests|num }}</td><td class="n">{{ u.calls_made|num }}</td><td class="n">{{ u.cache_hits|num }}</td><td class="n">{{ u.input_tokens|num }}</td><td class="n">{{ u.output_tokens|num }}</td><td class="n">{{ u.cost_run }}</td><td class="n">{{ u.cost_total }}</td></tr>
    {% endfor %}
  </table>
  <p class="note">Tokens include answers taken from the request cache; "cost in all" is what every answer cost when it was first bought, "cost this run" what this run paid. n/a = local model or no known price.</p>
  {% else %}<p class="muted">No model was called (no usage in the manifest).</p>{% endif %}
</section>

<section id="samples">
  <h2>Sampled examples <span class="muted">({{ samples|length }} of {{ rows|num }}, seed {{ seed }})</span></h2>
  {% for s in samples %}
  <div class="sample">
    <div class="head"><span>#{{ s.index }}</span>{% for k, v in s.badges %}<span><span class="muted">{{ k }}</span> <span class="badge {{ v }}">{{ v }}</span></span>{% endfor %}
      {% for k, v in s.fields %}<span><span class="muted">{{ k }}</span> <code>{{ v }}</code></span>{% endfor %}</div>
    <div class="body">
      <div class="part"><div class="label">Question</div><pre class="text">{{ s.question or "(not in this format)" }}</pre></div>
      <div class="part"><div class="label">Response</div><pre class="text">{{ s.response or "(not in this format)" }}</pre></div>
      <div class="part critique"><div class="label">Critique</div><pre class="text">{{ s.critique if s.critique is not none else "(this format has no critique)" }}</pre></div>
    </div>
  </div>
  {% else %}<p class="muted">The build wrote no rows.</p>{% endfor %}
</section>

<section id="recipe">
  <details><summary>Resolved recipe{% if resume %} · <code>{{ resume }}</code>{% endif %}</summary>
  <pre class="text">{{ recipe_yaml }}</pre></details>
</section>
</main>
<footer>cftdata {{ version }} · report generated {{ generated_at }} · charts are also saved as PNG files next to this page</footer>
</body>
</html>
"""


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _num(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() else f"{value:,.1f}"
    return str(value)


def render_html(context: dict[str, Any], images: dict[str, tuple[bytes, str]]) -> str:
    """The page for ``context`` with ``images`` (name -> (png bytes, alt text)) inlined as data URIs."""
    import jinja2
    from markupsafe import Markup, escape

    def img(name: str) -> Markup:
        if name not in images:
            return Markup('<p class="muted">(no chart)</p>')
        png, alt = images[name]
        return Markup(f'<img src="{data_uri(png)}" alt="{escape(alt)}" id="img-{escape(name)}">')

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=False)
    env.filters["num"] = _num
    return env.from_string(TEMPLATE).render(css=CSS, img=img, **context)
