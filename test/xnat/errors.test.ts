import { describe, expect, it } from 'vitest';
import { errorForStatus, extractBodyMessage, extractHtmlMessage } from '../../src/xnat/errors.js';
import { redactHeaders } from '../../src/xnat/http.js';

const RESTLET_500 = `<html>
<head>
   <title>Status page</title>
</head>
<body>
<h3>Error during service initialization</h3><p>You can get technical details <a href="http://www.w3.org/Protocols/rfc2616/rfc2616-sec10.html#sec10.5.1">here</a>.<br>
Please continue your visit at our <a href="/">home page</a>.
</p>
</body>
</html>`;

const TOMCAT_401 = `<!doctype html><html lang="en"><head><title>HTTP Status 401 – Unauthorized</title><style type="text/css">body {font-family:Tahoma,Arial,sans-serif;}</style></head><body><h1>HTTP Status 401 – Unauthorized</h1><hr class="line" /><p><b>Type</b> Status Report</p><p><b>Message</b> Your login attempt failed because the username and password combination you provided was invalid.</p><p><b>Description</b> The request has not been applied because it lacks valid authentication credentials.</p><hr class="line" /><h3>Apache Tomcat/9.0.37</h3></body></html>`;

const OLD_TOMCAT = `<html><head><title>Apache Tomcat/7.0.52 - Error report</title></head><body><h1>HTTP Status 403 - Access &amp; denied</h1><p><b>type</b> Status report</p><p><b>message</b> <u>Access &amp; denied</u></p></body></html>`;

describe('HTML error messages', () => {
  it("takes Restlet's <h3>", () => {
    expect(extractHtmlMessage(RESTLET_500)).toBe('Error during service initialization');
  });
  it("takes Tomcat's Message paragraph", () => {
    expect(extractHtmlMessage(TOMCAT_401)).toBe(
      'Your login attempt failed because the username and password combination you provided was invalid.',
    );
  });
  it('handles old Tomcat pages and entities', () => {
    expect(extractHtmlMessage(OLD_TOMCAT)).toBe('Access & denied');
  });
  it('falls back to the title', () => {
    expect(extractHtmlMessage('<html><head><title>Bad Gateway</title></head><body></body></html>')).toBe('Bad Gateway');
  });
  it('uses the first line of plain text, nothing for empty bodies', () => {
    expect(extractBodyMessage('Unable to find file.\nmore', 'text/plain')).toBe('Unable to find file.');
    expect(extractBodyMessage('', 'text/html')).toBeNull();
  });
  it('builds one-line errors with kind, status and advice', () => {
    const e = errorForStatus({ baseUrl: 'https://x', method: 'GET', path: '/data/projects/P/subjects' }, 403, 'Unable to read subjects for Project: P', 'text/plain');
    expect(e.kind).toBe('forbidden');
    expect(e.status).toBe(403);
    expect(e.message).toMatch(/^XNAT at https:\/\/x answered 403 to GET \/data\/projects\/P\/subjects: Unable to read subjects for Project: P \(.*permission/);
    expect(e.message).not.toContain('\n');
    expect(errorForStatus({ baseUrl: 'https://x', method: 'GET', path: '/p' }, 500, RESTLET_500, 'text/html').message).toContain(
      'Error during service initialization',
    );
    expect(errorForStatus({ baseUrl: 'https://x', method: 'PUT', path: '/p' }, 409, '', undefined).kind).toBe('conflict');
    expect(errorForStatus({ baseUrl: 'https://x', method: 'GET', path: '/p' }, 302, '', undefined, 'https://y/').kind).toBe('protocol');
  });
  it('redacts secrets in headers', () => {
    expect(redactHeaders({ Authorization: 'Basic abc', cookie: 'JSESSIONID=1', 'user-agent': 'xnatfs' })).toEqual({
      Authorization: '<redacted>',
      cookie: '<redacted>',
      'user-agent': 'xnatfs',
    });
  });
});
