/** Where a credential travels on each transport (spec §10, §12.2). @internal */

/** The bearer token of an `Authorization` header value, if it is one. */
export function bearerToken(header: string | string[] | undefined): string | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (!value) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(value);
  return m ? m[1] : undefined;
}

/** A token from the `Authorization` header, else from the `access_token` query parameter. */
export function transportToken(header: string | string[] | undefined, path: string | undefined): string | undefined {
  const fromHeader = bearerToken(header);
  if (fromHeader !== undefined) return fromHeader;
  if (!path) return undefined;
  const q = path.indexOf("?");
  if (q < 0) return undefined;
  return new URLSearchParams(path.slice(q + 1)).get("access_token") ?? undefined;
}

/** Runs the server's authenticate hook; a throwing hook refuses. */
export async function admit(
  authenticate: ((t: string | undefined) => boolean | Promise<boolean>) | undefined,
  token: string | undefined,
): Promise<boolean> {
  if (!authenticate) return true;
  try {
    return (await authenticate(token)) === true;
  } catch {
    return false;
  }
}
