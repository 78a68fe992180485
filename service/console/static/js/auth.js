// The token lives in sessionStorage (this tab only) and goes out only as a bearer header, never in a URL.
// Its `perms` are decoded here for display only: the server checks every request itself.

const KEY = 'batchsync.token';

export function token() {
  return sessionStorage.getItem(KEY);
}

export function logout() {
  sessionStorage.removeItem(KEY);
}

function decodePart(part) {
  const base64 = part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '=');
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

/** The token's claims, or null when it is not a well-formed JWT. */
export function claimsOf(value) {
  const parts = (value || '').split('.');
  if (parts.length !== 3) return null;
  try {
    const claims = decodePart(parts[1]);
    return claims && typeof claims === 'object' ? claims : null;
  } catch {
    return null;
  }
}

export function claims() {
  return claimsOf(token());
}

/** Keep a token; false when it is not a well-formed JWT. */
export function login(value) {
  const trimmed = (value || '').trim();
  if (!claimsOf(trimmed)) return false;
  sessionStorage.setItem(KEY, trimmed);
  return true;
}

export function expired() {
  const exp = claims()?.exp;
  return typeof exp === 'number' && exp * 1000 <= Date.now();
}

/** The server's rule (service/auth.permission_matches): `a:b:*` grants every `a:b:x`. */
export function grants(granted, wanted) {
  if (granted === wanted) return true;
  const have = granted.split(':');
  const want = wanted.split(':');
  for (let i = 0; i < have.length; i += 1) {
    if (have[i] === '*' && i === have.length - 1) return want.length >= have.length;
    if (i >= want.length || (have[i] !== '*' && have[i] !== want[i])) return false;
  }
  return have.length === want.length;
}

export function can(permission) {
  const perms = claims()?.perms;
  return Array.isArray(perms) && perms.some((p) => typeof p === 'string' && grants(p, permission));
}
