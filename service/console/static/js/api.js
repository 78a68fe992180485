// The JSON API with the bearer token; every answer is the envelope {code, message, data}.

import { logout, token } from './auth.js';

export class ApiError extends Error {
  constructor(status, message, data) {
    super(message);
    this.status = status;
    this.data = data;
  }
}

let onUnauthorized = () => {};

export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

export async function api(method, path, body) {
  if (!token()) {
    // logged out while a page was still loading: nothing is sent without a token
    onUnauthorized();
    throw new ApiError(401, '', null);
  }
  const headers = { Authorization: `Bearer ${token()}`, Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method, headers, cache: 'no-store', body: body === undefined ? undefined : JSON.stringify(body),
  });
  let envelope = null;
  try {
    envelope = await response.json();
  } catch {
    envelope = null;
  }
  if (response.status === 401) {
    logout();
    onUnauthorized();
  }
  if (!response.ok) {
    throw new ApiError(response.status, envelope?.message || `HTTP ${response.status}`, envelope?.data);
  }
  return envelope || { code: response.status, message: '', data: null };
}

export const get = (path) => api('GET', path).then((envelope) => envelope.data);

export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== '') search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}
