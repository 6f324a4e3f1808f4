// Error bodies and small response helpers, in the shapes XNAT's stack produces them.

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    /** 'status-page': Restlet HTML page with <h3>message</h3>; 'empty': no body (FileList 404s). */
    readonly body: 'status-page' | 'empty' = 'status-page',
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  409: 'Conflict',
  416: 'Requested Range Not Satisfiable',
  500: 'Internal Server Error',
};

export function reason(status: number): string {
  return REASONS[status] ?? 'Error';
}

/** Restlet 1.1 status page (xnat-api §1), which clients scrape for the <h3> message. */
export function restletStatusPage(status: number, message: string): string {
  const anchor = status >= 500 ? 'sec10.5.' + (status - 499) : 'sec10.4.' + (status - 399);
  return (
    '<html>\n<head>\n   <title>Status page</title>\n</head>\n<body>\n' +
    `<h3>${escapeHtml(message || reason(status))}</h3>` +
    `<p>You can get technical details <a href="http://www.w3.org/Protocols/rfc2616/rfc2616-sec10.html#${anchor}">here</a>.<br>\n` +
    'Please continue your visit at our <a href="/">home page</a>.\n</p>\n</body>\n</html>\n'
  );
}

/** Tomcat's sendError page (Spring Security's 401s). */
export function tomcatErrorPage(status: number, message: string, description: string): string {
  const title = `HTTP Status ${status} – ${reason(status)}`;
  return (
    `<!doctype html><html lang="en"><head><title>${title}</title><style type="text/css">body {font-family:Tahoma,Arial,sans-serif;} ` +
    'h1, h2, h3, b {color:white;background-color:#525D76;} h1 {font-size:22px;} h2 {font-size:16px;} h3 {font-size:14px;} ' +
    'p {font-size:12px;} a {color:black;} .line {height:1px;background-color:#525D76;border:none;}</style></head><body>' +
    `<h1>${title}</h1><hr class="line" /><p><b>Type</b> Status Report</p><p><b>Message</b> ${message}</p>` +
    `<p><b>Description</b> ${escapeHtml(description)}</p><hr class="line" /><h3>Apache Tomcat/9.0.85</h3></body></html>`
  );
}

export function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export const LOGIN_FAILURE_MESSAGE =
  'Your login attempt failed because the username and password combination you provided was invalid or your user already has the maximum number of user sessions open. ' +
  'After 20 failed login attempts, your user account will be locked. If you believe your account is currently locked, you can:' +
  '<ul><li>Unlock it by resetting your password</li><li>Wait one hour for it to unlock automatically</li></ul>';

const EXT_TYPES: Record<string, string> = {
  bmp: 'image/bmp',
  gif: 'image/gif',
  htm: 'text/html',
  html: 'text/html',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  pdf: 'application/pdf',
  png: 'image/png',
  svg: 'image/svg+xml',
  tif: 'image/tiff',
  tiff: 'image/tiff',
  txt: 'text/plain',
  xml: 'text/xml',
};

/** Restlet's extension mapping as XNAT uses it; everything else (including .dcm) is octet-stream. */
export function contentTypeFor(name: string): string {
  const ext = /\.([^./]+)$/.exec(name)?.[1]?.toLowerCase() ?? '';
  return EXT_TYPES[ext] ?? 'application/octet-stream';
}

const BROWSER_UA = /Mozilla|MSIE|AppleWebKit|Opera/;
export function isBrowser(ua: string | undefined): boolean {
  return !!ua && BROWSER_UA.test(ua);
}

/** Java's URLDecoder.decode: '+' is a space, %XX are UTF-8 bytes; malformed escapes throw. */
export function javaUrlDecode(s: string): string {
  if (!s.includes('%') && !s.includes('+')) return s;
  const bytes: number[] = [];
  let out = '';
  const flush = (): void => {
    if (bytes.length) out += Buffer.from(bytes).toString('utf8');
    bytes.length = 0;
  };
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '%') {
      const hex = s.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) throw new Error(`URLDecoder: Illegal hex characters in escape (%) pattern - ${hex}`);
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else {
      flush();
      out += c === '+' ? ' ' : c;
    }
  }
  flush();
  return out;
}
