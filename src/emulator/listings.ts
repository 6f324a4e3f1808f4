// Archive listings (projects, subjects, experiments, scans, assessors, resources) and item views.
import type { Ctx } from './context.js';
import { renderTable, applyTableParams, xmlEscape, type Row, type Table, type TableFormat } from './resultset.js';
import type { Scope } from './resolve.js';
import { projectOf, type ArchiveStore, type OwnerNode, type ResourceNode } from './store.js';

/** ?format=…, else Accept negotiation where JSON is the first variant (so * / * gets JSON). */
export function tableFormat(ctx: Ctx): TableFormat {
  const f = (ctx.query.get('format') ?? '').toLowerCase();
  if (f === 'json' || f === 'xml' || f === 'csv' || f === 'html') return f;
  if (f) return 'json';
  const accept = (ctx.req.headers.accept ?? '*/*').toLowerCase();
  for (const part of accept.split(',')) {
    const t = part.split(';')[0]!.trim();
    if (t === 'application/json' || t === '*/*' || t === 'application/*') return 'json';
    if (t === 'text/xml' || t === 'application/xml') return 'xml';
    if (t === 'text/csv') return 'csv';
    if (t === 'text/html') return 'html';
  }
  return 'json';
}

export async function sendTable(ctx: Ctx, t: Table): Promise<void> {
  const { body, contentType } = renderTable(t, tableFormat(ctx));
  await ctx.send(200, body, contentType);
}

/** limit/offset paging; XNAT drops totalRecords when an offset is given. */
function page(ctx: Ctx, t: Table): Table {
  const total = t.rows.length;
  const offset = ctx.query.get('offset');
  const limit = ctx.query.get('limit');
  let rows = t.rows;
  if (offset !== null) rows = rows.slice(Math.max(0, Number(offset) || 0));
  if (limit !== null && Number(limit) >= 0) rows = rows.slice(0, Number(limit));
  t.rows = rows;
  t.meta = offset !== null ? t.meta.filter(([k]) => k !== 'totalRecords') : t.meta.map(([k, v]) => [k, k === 'totalRecords' ? String(total) : v]);
  return t;
}

export async function listProjects(ctx: Ctx): Promise<void> {
  const { store, auth } = ctx.state;
  const restrict = ctx.query.get('restrict');
  const rows: Row[] = [];
  for (const p of store.projects.values()) {
    if (!auth.canRead(ctx.user!, p.id)) continue;
    if ((restrict === 'edit' || restrict === 'delete') && !auth.canEdit(ctx.user!, p.id)) continue;
    rows.push({
      ID: p.id,
      secondary_ID: p.secondaryId,
      name: p.name,
      description: p.description,
      pi_firstname: p.piFirstname,
      pi_lastname: p.piLastname,
      URI: `/data/projects/${p.id}`,
    });
  }
  const t: Table = {
    columns: ['ID', 'secondary_ID', 'name', 'description', 'pi_firstname', 'pi_lastname', 'URI'],
    rows,
    meta: [['totalRecords', String(rows.length)]],
  };
  await sendTable(ctx, applyTableParams(t, ctx.query, { allowColumns: true }));
}

export async function listSubjects(ctx: Ctx, scope: Scope): Promise<void> {
  const p = scope.project!;
  const rows: Row[] = [...p.subjects.values()].map((s) => ({
    ID: s.id,
    project: p.id,
    label: s.label,
    insert_date: s.insertDate,
    insert_user: s.insertUser,
    URI: `/data/subjects/${s.id}`,
  }));
  const t: Table = { columns: ['ID', 'project', 'label', 'insert_date', 'insert_user', 'URI'], rows, meta: [['totalRecords', '']] };
  await sendTable(ctx, page(ctx, applyTableParams(t, ctx.query, { allowColumns: true })));
}

export async function listExperiments(ctx: Ctx, scope: Scope): Promise<void> {
  const { store, auth } = ctx.state;
  const global = !scope.project;
  const subjects = scope.subject
    ? [scope.subject]
    : global
      ? [...store.projects.values()].filter((p) => auth.canRead(ctx.user!, p.id)).flatMap((p) => [...p.subjects.values()])
      : [...scope.project!.subjects.values()];
  const xsiType = ctx.query.get('xsiType');
  const rows: Row[] = [];
  for (const s of subjects) {
    for (const e of s.experiments.values()) {
      if (xsiType && e.xsiType !== xsiType) continue;
      // subject_ID/subject_label: default columns of the global list only; elsewhere on request
      // (`columns=`, XMLPathShortcuts EXPERIMENT_DATA).
      const r: Row = { ID: e.id, project: s.project.id, date: e.date, xsiType: e.xsiType, label: e.label, insert_date: e.insertDate, subject_ID: s.id, subject_label: s.label };
      r.URI = `/data/experiments/${e.id}`;
      rows.push(r);
    }
  }
  const columns = global
    ? ['ID', 'project', 'date', 'xsiType', 'label', 'insert_date', 'subject_ID', 'subject_label', 'URI']
    : ['ID', 'project', 'date', 'xsiType', 'label', 'insert_date', 'URI'];
  const meta: Array<[string, string]> = global ? [['totalRecords', ''], ['title', 'Matching experiments']] : [['totalRecords', '']];
  const t: Table = { columns, rows, meta };
  await sendTable(ctx, page(ctx, applyTableParams(t, ctx.query, { allowColumns: true, extraColumns: ['subject_ID', 'subject_label'] })));
}

export async function listScans(ctx: Ctx, scope: Scope): Promise<void> {
  const e = scope.experiment!;
  const rows: Row[] = [...e.scans.values()].map((s) => ({
    xnat_imagescandata_id: String(s.pk),
    ID: s.id,
    type: s.type,
    quality: s.quality,
    xsiType: s.xsiType,
    note: s.note,
    series_description: s.seriesDescription,
    frames: s.frames,
    URI: `/data/experiments/${e.id}/scans/${s.id}`,
  }));
  const t: Table = {
    columns: ['xnat_imagescandata_id', 'ID', 'type', 'quality', 'xsiType', 'note', 'series_description', 'URI'],
    rows,
    meta: [['totalRecords', String(rows.length)]],
  };
  await sendTable(ctx, applyTableParams(t, ctx.query, { allowColumns: true, extraColumns: ['frames'] }));
}

export async function listAssessors(ctx: Ctx, scope: Scope): Promise<void> {
  const e = scope.experiment!;
  const rows: Row[] = [...e.assessors.values()].map((a) => ({
    ID: a.id,
    project: e.subject.project.id,
    label: a.label,
    date: a.date,
    xsiType: a.xsiType,
    insert_date: a.insertDate,
    session_ID: e.id,
    session_label: e.label,
    URI: `/data/experiments/${a.id}`,
  }));
  const t: Table = {
    columns: ['ID', 'project', 'label', 'date', 'xsiType', 'insert_date', 'session_ID', 'session_label', 'URI'],
    rows,
    meta: [['totalRecords', String(rows.length)]],
  };
  await sendTable(ctx, applyTableParams(t, ctx.query, { allowColumns: true }));
}

export function resourceRow(store: ArchiveStore, r: ResourceNode): Row {
  const o = r.owner;
  const { count, size } = store.resourceStats(r);
  let category = 'resources';
  let catId = '';
  let catDesc = ' ';
  if (o.kind === 'experiment') catId = o.id;
  else if (o.kind === 'scan') {
    category = 'scans';
    catId = o.id;
    catDesc = o.type;
  } else if (o.kind === 'assessor') {
    category = 'assessors';
    catId = o.id;
    catDesc = o.xsiType;
  }
  return {
    xnat_abstractresource_id: String(r.id),
    label: r.label,
    element_name: 'xnat:resourceCatalog',
    category,
    cat_id: catId,
    cat_desc: catDesc,
    file_count: String(count),
    file_size: String(size),
    tags: r.tags.join(','),
    content: r.content,
    format: r.format,
  };
}

export async function listResources(ctx: Ctx, owners: OwnerNode[]): Promise<void> {
  const { store } = ctx.state;
  const all: OwnerNode[] = [...owners];
  if (ctx.flag('all')) {
    for (const o of owners) {
      if (o.kind === 'experiment') all.push(...o.scans.values(), ...o.assessors.values());
    }
  }
  const rows = all.flatMap((o) => [...o.resources.values()].map((r) => resourceRow(store, r)));
  const t: Table = {
    columns: ['xnat_abstractresource_id', 'label', 'element_name', 'category', 'cat_id', 'cat_desc', 'file_count', 'file_size', 'tags', 'content', 'format'],
    rows,
    meta: [
      ['title', 'Resources'],
      ['totalRecords', String(rows.length)],
    ],
  };
  await sendTable(ctx, applyTableParams(t, ctx.query, { allowColumns: false }));
}

/** Minimal item representation: `{"items":[…]}` for JSON, a small XML document otherwise. */
export async function sendItem(ctx: Ctx, xsiType: string, fields: Record<string, string>, children: Array<{ field: string; items: Array<Record<string, string>> }> = []): Promise<void> {
  const f = (ctx.query.get('format') ?? '').toLowerCase();
  if (f === 'json') {
    const body = {
      items: [
        {
          children: children.map((c) => ({
            field: c.field,
            items: c.items.map((d) => ({ children: [], meta: { create_event_id: 1, 'xsi:type': d['xsiType'] ?? '', isHistory: false, start_date: '' }, data_fields: d })),
          })),
          meta: { create_event_id: 1, 'xsi:type': xsiType, isHistory: false, start_date: '' },
          data_fields: fields,
        },
      ],
    };
    await ctx.send(200, JSON.stringify(body), 'application/json');
    return;
  }
  const [ns, el] = xsiType.split(':') as [string, string];
  const tag = `${ns}:${el.replace(/Data$/, '').replace(/^./, (c) => c.toUpperCase())}`;
  const attrs = Object.entries(fields)
    .filter(([k]) => ['ID', 'label', 'project'].includes(k))
    .map(([k, v]) => ` ${k}="${xmlEscape(v)}"`)
    .join('');
  const body =
    `<?xml version="1.0" encoding="UTF-8"?>\n<${tag}${attrs} xmlns:xnat="http://nrg.wustl.edu/xnat" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n` +
    Object.entries(fields)
      .filter(([k]) => !['ID', 'label', 'project'].includes(k))
      .map(([k, v]) => `  <xnat:${k}>${xmlEscape(v)}</xnat:${k}>\n`)
      .join('') +
    `</${tag}>\n`;
  await ctx.send(200, body, 'text/xml');
}

export async function itemView(ctx: Ctx, kind: string, scope: Scope): Promise<void> {
  if (kind === 'project') {
    const p = scope.project!;
    await sendItem(ctx, 'xnat:projectData', { ID: p.id, secondary_ID: p.secondaryId, name: p.name, description: p.description });
  } else if (kind === 'subject') {
    const s = scope.subject!;
    await sendItem(ctx, 'xnat:subjectData', { ID: s.id, label: s.label, project: s.project.id, insert_date: s.insertDate });
  } else if (kind === 'experiment') {
    const e = scope.experiment!;
    await sendItem(
      ctx,
      e.xsiType,
      { ID: e.id, label: e.label, project: projectOf(e).id, subject_ID: e.subject.id, date: e.date },
      [{ field: 'scans/scan', items: [...e.scans.values()].map((s) => ({ ID: s.id, type: s.type, xsiType: s.xsiType, quality: s.quality, series_description: s.seriesDescription })) }],
    );
  } else if (kind === 'scan') {
    const s = scope.scans![0]!;
    await sendItem(ctx, s.xsiType, { ID: s.id, type: s.type, quality: s.quality, series_description: s.seriesDescription, image_session_ID: s.experiment.id });
  } else if (kind === 'assessor') {
    const a = scope.assessor!;
    await sendItem(ctx, a.xsiType, { ID: a.id, label: a.label, project: projectOf(a).id, imageSession_ID: a.experiment.id, date: a.date });
  }
}
