/*
 * virtnet: the compiled thin client (what `make install` puts at .venv/bin/virtnet).
 *
 * Why C: a command sent to virtnetd should cost the daemon's work and little else. The
 * Python thin client (virtnet.thin, started by the shell launcher bin/virtnet) spends ~20 ms
 * before its request leaves: the shell, the interpreter's start and one import. This does
 * the same exchange in ~1 ms, so `virtnet net-start` through virtnetd is mostly the start.
 *
 * It is the same client, not another one: it speaks the `cli` request of docs/protocol.md
 * exactly as virtnet.thin does (the same host options, socket path, attachments, exit codes
 * and error lines; tests/integration/test_daemon.py runs both and the in-process CLI on the
 * same commands and compares every byte). Whatever does not go to a daemon (no daemon and
 * VIRTNET_DAEMON=auto or never; lab, conformance, graph; no command) is handed to the Python
 * launcher beside this binary (virtnet-py), which runs the CLI in-process as before.
 *
 * Input is the user's argv, files and standard input (sent as the user's own bytes, never
 * interpreted here) and the daemon's replies (parsed with a bounded recursive-descent JSON
 * reader: depth and sizes limited, any malformed reply is one error line and exit 1).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_FILES (16 << 20)   /* virtnet.thin.MAX_FILES: what may be attached in all */
#define MAX_DEPTH 32           /* nesting of a reply; the daemon's are 3 deep */
#define MAX_LINE (64 << 20)    /* one reply line */
#define LAUNCHER "virtnet-py"  /* the Python launcher (bin/virtnet), beside this binary */

static const char *const in_process_commands[] = {"lab", "conformance", "graph", NULL};

/* --- growable byte buffers ---------------------------------------------------------- */
struct buf {
	char *p;
	size_t n, cap;
};

static void out_of_memory(void)
{
	fputs("error: virtnet: out of memory\n", stderr);
	exit(1);
}

static void reserve(struct buf *b, size_t more)
{
	if (b->n + more + 1 <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap < b->n + more + 1)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (!p)
		out_of_memory();
	b->p = p;
	b->cap = cap;
}

static void put(struct buf *b, const void *s, size_t n)
{
	reserve(b, n);
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = 0;
}

static void puts_(struct buf *b, const char *s) { put(b, s, strlen(s)); }

/* --- JSON out ------------------------------------------------------------------------ */

/* Length of the well-formed UTF-8 sequence at s (Python's strict decoder), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
	unsigned char c = s[0];
	size_t len;
	uint32_t v, min;
	if (c < 0x80) {
		*cp = c;
		return 1;
	} else if (c >= 0xc2 && c <= 0xdf) {
		len = 2, v = c & 0x1f, min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3, v = c & 0x0f, min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4, v = c & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		v = (v << 6) | (s[i] & 0x3f);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return len;
}

static void put_u16(struct buf *b, unsigned v)
{
	char esc[8];
	snprintf(esc, sizeof esc, "\\u%04x", v & 0xffff);
	put(b, esc, 6);
}

/* A JSON string of the bytes s, as Python sees a command-line argument (UTF-8 with
 * surrogateescape: a byte that is not UTF-8 becomes U+DC80..U+DCFF), escaped to ASCII. */
static void put_json_string(struct buf *b, const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	put(b, "\"", 1);
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t len = utf8_seq(s + i, n - i, &cp);
		if (len == 0) {
			put_u16(b, 0xdc00 | s[i]);
			i++;
			continue;
		}
		i += len;
		switch (cp) {
		case '"': puts_(b, "\\\""); break;
		case '\\': puts_(b, "\\\\"); break;
		case '\n': puts_(b, "\\n"); break;
		case '\r': puts_(b, "\\r"); break;
		case '\t': puts_(b, "\\t"); break;
		case '\b': puts_(b, "\\b"); break;
		case '\f': puts_(b, "\\f"); break;
		default:
			if (cp < 0x20 || cp > 0x7e) {
				if (cp > 0xffff) {
					cp -= 0x10000;
					put_u16(b, 0xd800 | (cp >> 10));
					put_u16(b, 0xdc00 | (cp & 0x3ff));
				} else {
					put_u16(b, cp);
				}
			} else {
				char c = (char)cp;
				put(b, &c, 1);
			}
		}
	}
	put(b, "\"", 1);
}

static void put_base64(struct buf *b, const unsigned char *s, size_t n)
{
	static const char abc[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	reserve(b, (n + 2) / 3 * 4 + 2);
	char *o = b->p + b->n;
	*o++ = '"';
	size_t i = 0;
	for (; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
		*o++ = abc[v >> 18];
		*o++ = abc[(v >> 12) & 63];
		*o++ = abc[(v >> 6) & 63];
		*o++ = abc[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);
		*o++ = abc[v >> 18];
		*o++ = abc[(v >> 12) & 63];
		*o++ = i + 1 < n ? abc[(v >> 6) & 63] : '=';
		*o++ = '=';
	}
	*o++ = '"';
	b->n = (size_t)(o - b->p);
	b->p[b->n] = 0;
}

/* --- JSON in: a reply line as a tree, freed with its line ----------------------------- */
enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

struct jval {
	enum jtype type;
	double num;
	struct buf str;        /* J_STR: the decoded bytes */
	struct buf key;        /* a member's name, in an object */
	struct jval *kids;     /* J_ARR, J_OBJ */
	struct jval *next;
};

struct reader {
	const char *s, *end;
	int depth;
};

static void jfree(struct jval *v)
{
	while (v) {
		struct jval *next = v->next;
		jfree(v->kids);
		free(v->str.p);
		free(v->key.p);
		free(v);
		v = next;
	}
}

static void skip_space(struct reader *r)
{
	while (r->s < r->end && (*r->s == ' ' || *r->s == '\t' || *r->s == '\n' || *r->s == '\r'))
		r->s++;
}

static int hex4(struct reader *r, unsigned *out)
{
	if (r->end - r->s < 4)
		return -1;
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		char c = *r->s++;
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

static void put_utf8(struct buf *b, uint32_t cp)
{
	unsigned char o[4];
	size_t n;
	if (cp >= 0xdc80 && cp <= 0xdcff) { /* surrogateescape: the byte it stands for */
		o[0] = (unsigned char)(cp & 0xff), n = 1;
	} else if (cp >= 0xd800 && cp <= 0xdfff) { /* any other lone surrogate */
		o[0] = '?', n = 1;
	} else if (cp < 0x80) {
		o[0] = (unsigned char)cp, n = 1;
	} else if (cp < 0x800) {
		o[0] = (unsigned char)(0xc0 | cp >> 6), o[1] = (unsigned char)(0x80 | (cp & 63)), n = 2;
	} else if (cp < 0x10000) {
		o[0] = (unsigned char)(0xe0 | cp >> 12), o[1] = (unsigned char)(0x80 | ((cp >> 6) & 63));
		o[2] = (unsigned char)(0x80 | (cp & 63)), n = 3;
	} else {
		o[0] = (unsigned char)(0xf0 | cp >> 18), o[1] = (unsigned char)(0x80 | ((cp >> 12) & 63));
		o[2] = (unsigned char)(0x80 | ((cp >> 6) & 63)), o[3] = (unsigned char)(0x80 | (cp & 63));
		n = 4;
	}
	put(b, o, n);
}

static int read_string(struct reader *r, struct buf *into)
{
	r->s++; /* the opening quote */
	put(into, "", 0);
	while (r->s < r->end) {
		unsigned char c = (unsigned char)*r->s++;
		if (c == '"')
			return 0;
		if (c < 0x20)
			return -1;
		if (c != '\\') {
			put(into, &c, 1);
			continue;
		}
		if (r->s >= r->end)
			return -1;
		char e = *r->s++;
		unsigned u, low;
		switch (e) {
		case '"': case '\\': case '/': put(into, &e, 1); break;
		case 'b': put(into, "\b", 1); break;
		case 'f': put(into, "\f", 1); break;
		case 'n': put(into, "\n", 1); break;
		case 'r': put(into, "\r", 1); break;
		case 't': put(into, "\t", 1); break;
		case 'u':
			if (hex4(r, &u))
				return -1;
			if (u >= 0xd800 && u <= 0xdbff && r->end - r->s >= 6 && r->s[0] == '\\' &&
			    r->s[1] == 'u') {
				const char *back = r->s;
				r->s += 2;
				if (hex4(r, &low) == 0 && low >= 0xdc00 && low <= 0xdfff) {
					put_utf8(into, 0x10000 + ((u - 0xd800) << 10) + (low - 0xdc00));
					break;
				}
				r->s = back;
			}
			put_utf8(into, u);
			break;
		default:
			return -1;
		}
	}
	return -1;
}

static struct jval *read_value(struct reader *r);

static int read_members(struct reader *r, struct jval *parent, char close, int named)
{
	struct jval **tail = &parent->kids;
	r->s++; /* [ or { */
	skip_space(r);
	if (r->s < r->end && *r->s == close) {
		r->s++;
		return 0;
	}
	for (;;) {
		struct buf key = {0};
		if (named) {
			skip_space(r);
			if (r->s >= r->end || *r->s != '"' || read_string(r, &key)) {
				free(key.p);
				return -1;
			}
			skip_space(r);
			if (r->s >= r->end || *r->s++ != ':') {
				free(key.p);
				return -1;
			}
		}
		struct jval *v = read_value(r);
		if (!v) {
			free(key.p);
			return -1;
		}
		v->key = key;
		*tail = v;
		tail = &v->next;
		skip_space(r);
		if (r->s >= r->end)
			return -1;
		char c = *r->s++;
		if (c == close)
			return 0;
		if (c != ',')
			return -1;
	}
}

static int literal(struct reader *r, const char *word)
{
	size_t n = strlen(word);
	if ((size_t)(r->end - r->s) < n || memcmp(r->s, word, n))
		return -1;
	r->s += n;
	return 0;
}

static struct jval *read_value(struct reader *r)
{
	if (++r->depth > MAX_DEPTH)
		return NULL;
	struct jval *v = calloc(1, sizeof *v);
	if (!v)
		out_of_memory();
	skip_space(r);
	int bad = r->s >= r->end;
	if (bad) {
	} else if (*r->s == '"') {
		v->type = J_STR;
		bad = read_string(r, &v->str);
	} else if (*r->s == '{') {
		v->type = J_OBJ;
		bad = read_members(r, v, '}', 1);
	} else if (*r->s == '[') {
		v->type = J_ARR;
		bad = read_members(r, v, ']', 0);
	} else if (*r->s == 't' || *r->s == 'f') {
		v->type = J_BOOL;
		v->num = *r->s == 't';
		bad = literal(r, v->num ? "true" : "false");
	} else if (*r->s == 'n') {
		bad = literal(r, "null");
	} else {
		char number[64];
		size_t n = 0;
		while (r->s + n < r->end && n < sizeof number - 1 && r->s[n] &&
		       strchr("+-.0123456789eE", r->s[n]))
			n++;
		memcpy(number, r->s, n);
		number[n] = 0;
		char *end;
		v->type = J_NUM;
		v->num = strtod(number, &end);
		bad = n == 0 || end != number + n;
		r->s += n;
	}
	r->depth--;
	if (bad) {
		jfree(v);
		return NULL;
	}
	return v;
}

static struct jval *member(const struct jval *obj, const char *name)
{
	if (!obj || obj->type != J_OBJ)
		return NULL;
	for (struct jval *k = obj->kids; k; k = k->next)
		if (k->key.n == strlen(name) && !memcmp(k->key.p, name, k->key.n))
			return k;
	return NULL;
}

static long number_or(const struct jval *v, long otherwise)
{
	if (!v || (v->type != J_NUM && v->type != J_BOOL) || v->num != v->num ||
	    v->num > INT_MAX || v->num < INT_MIN)
		return otherwise;
	return (long)v->num;
}

/* --- the command line ---------------------------------------------------------------- */
struct host {
	const char *state_dir, *run_dir, *netns;
};

/* Python's os.path.abspath: made absolute against the working directory, then normalised
 * without looking at the file system. The result is malloc'd. */
static char *abspath(const char *path)
{
	struct buf whole = {0};
	if (path[0] != '/') {
		char *cwd = getcwd(NULL, 0);
		if (!cwd) {
			fprintf(stderr, "error: virtnet: the working directory: %s\n", strerror(errno));
			exit(1);
		}
		puts_(&whole, cwd);
		puts_(&whole, "/");
		free(cwd);
	}
	puts_(&whole, path);
	const char *s = whole.p;
	size_t lead = s[0] == '/' ? (s[1] == '/' && s[2] != '/' ? 2 : 1) : 0;
	char **parts = calloc(whole.n + 1, sizeof *parts);
	if (!parts)
		out_of_memory();
	size_t count = 0;
	char *copy = strdup(s);
	if (!copy)
		out_of_memory();
	for (char *save, *part = strtok_r(copy, "/", &save); part; part = strtok_r(NULL, "/", &save)) {
		if (!strcmp(part, "."))
			continue;
		if (!strcmp(part, "..")) {
			if (count)
				count--;
			continue;
		}
		parts[count++] = part;
	}
	struct buf out = {0};
	put(&out, "//", lead);
	for (size_t i = 0; i < count; i++) {
		if (i)
			puts_(&out, "/");
		puts_(&out, parts[i]);
	}
	if (!out.n)
		puts_(&out, ".");
	free(parts);
	free(copy);
	free(whole.p);
	return out.p;
}

/* virtnet.thin.split_globals: the host-choosing options before the command; the index of
 * the rest in argv (-v stays in the rest: it is the CLI's). */
static int split_globals(int argc, char **argv, struct host *h, int *verbose_at, int *nverbose)
{
	int i = 1;
	*nverbose = 0;
	while (i < argc) {
		const char *arg = argv[i];
		static const char *const names[] = {"--state-dir", "--run-dir", "--netns"};
		const char **slot[] = {&h->state_dir, &h->run_dir, &h->netns};
		int matched = -1;
		for (int k = 0; k < 3; k++) {
			size_t n = strlen(names[k]);
			if (!strncmp(arg, names[k], n) && (arg[n] == 0 || arg[n] == '='))
				matched = k;
		}
		if (matched >= 0) {
			const char *eq = strchr(arg, '=');
			if (eq) {
				*slot[matched] = eq + 1;
				i++;
			} else if (i + 1 < argc) {
				*slot[matched] = argv[i + 1];
				i += 2;
			} else {
				return -1; /* the real CLI reports the missing value */
			}
		} else if (!strcmp(arg, "-v") || !strcmp(arg, "--verbose")) {
			verbose_at[(*nverbose)++] = i++;
		} else {
			break;
		}
	}
	return i;
}

static char *socket_for(const struct host *h)
{
	const char *run = h->run_dir && *h->run_dir ? h->run_dir : getenv("VIRTNET_RUN_DIR");
	struct buf path = {0};
	if (run && *run) {
		char *absolute = abspath(run);
		puts_(&path, absolute);
		free(absolute);
	} else if (h->netns && *h->netns) {
		puts_(&path, "/run/virtnet/netns/");
		puts_(&path, h->netns);
	} else {
		puts_(&path, "/run/virtnet");
	}
	puts_(&path, "/virtnetd.sock");
	return path.p;
}

/* The Python launcher beside this binary, which runs the CLI in-process. */
static void in_process(char **argv)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n <= 0) {
		fprintf(stderr, "error: virtnet: cannot find itself: %s\n", strerror(errno));
		exit(1);
	}
	self[n] = 0;
	char *slash = strrchr(self, '/');
	struct buf launcher = {0};
	put(&launcher, self, (size_t)(slash - self + 1));
	puts_(&launcher, LAUNCHER);
	signal(SIGPIPE, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	argv[0] = launcher.p;
	execv(launcher.p, argv);
	fprintf(stderr, "error: virtnet: cannot run %s: %s\n", launcher.p, strerror(errno));
	exit(1);
}

/* Read at most limit bytes of fd into b; -1 with errno on a read error. */
static int read_all(int fd, struct buf *b, size_t limit)
{
	while (b->n < limit) {
		size_t want = limit - b->n < 65536 ? limit - b->n : 65536;
		reserve(b, want);
		ssize_t got = read(fd, b->p + b->n, want);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (got == 0)
			break;
		b->n += (size_t)got;
	}
	return 0;
}

/* virtnet.thin._attachments: standard input (when "-" is an argument) and every argument
 * that names an existing file, read here with the caller's rights, in base64. */
static void put_attachments(struct buf *req, char **args, int nargs)
{
	int dash = 0;
	for (int i = 0; i < nargs; i++)
		dash |= !strcmp(args[i], "-");
	puts_(req, ",\"stdin_b64\":");
	if (dash) {
		struct buf in = {0};
		if (read_all(0, &in, (size_t)MAX_FILES + 1) < 0) {
			fprintf(stderr, "error: virtnet: standard input: %s\n", strerror(errno));
			exit(1);
		}
		put_base64(req, (const unsigned char *)in.p, in.n);
		free(in.p);
	} else {
		puts_(req, "null");
	}
	puts_(req, ",\"files_b64\":{");
	size_t total = 0;
	int first = 1;
	for (int i = 0; i < nargs; i++) {
		const char *arg = args[i];
		struct stat st;
		int seen = 0;
		for (int k = 0; k < i; k++)
			seen |= !strcmp(args[k], arg);
		if (!strcmp(arg, "-") || seen || stat(arg, &st) != 0)
			continue;
		struct buf data = {0};
		int fd = open(arg, O_RDONLY | O_CLOEXEC);
		int failed = fd < 0 || read_all(fd, &data, (size_t)MAX_FILES + 1) < 0;
		int error = errno;
		if (fd >= 0)
			close(fd);
		if (!failed) {
			total += data.n;
			if (total > MAX_FILES) {
				free(data.p);
				continue;
			}
		}
		if (!first)
			puts_(req, ",");
		first = 0;
		put_json_string(req, arg, strlen(arg));
		puts_(req, ":");
		if (failed) { /* a directory, no permission: the daemon says so, as in-process */
			struct buf why = {0};
			puts_(&why, "!");
			puts_(&why, strerror(error));
			put_json_string(req, why.p, why.n);
			free(why.p);
		} else {
			put_base64(req, (const unsigned char *)data.p, data.n);
		}
		free(data.p);
	}
	puts_(req, "}");
}

static void put_or_null(struct buf *req, const char *value)
{
	if (value)
		put_json_string(req, value, strlen(value));
	else
		puts_(req, "null");
}

/* --- the exchange -------------------------------------------------------------------- */
static void on_interrupt(int sig)
{
	(void)sig;
	_exit(130);
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t done = write(fd, p, n);
		if (done < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += done;
		n -= (size_t)done;
	}
	return 0;
}

static int os_error(void)
{
	if (errno == EPIPE)
		return 141;
	fprintf(stderr, "error: virtnetd: %s\n", strerror(errno));
	return 1;
}

/* One reply line: -1 to read on, else the exit code. */
static int handle(const char *line, size_t n)
{
	struct reader r = {line, line + n, 0};
	struct jval *message = read_value(&r);
	if (message)
		skip_space(&r);
	if (!message || r.s != r.end || message->type != J_OBJ) {
		jfree(message);
		fputs("error: virtnetd sent a malformed reply\n", stderr);
		return 1;
	}
	int code = -1;
	struct jval *method = member(message, "method"), *params = member(message, "params");
	struct jval *result = member(message, "result"), *error = member(message, "error");
	if (method && method->type == J_STR && !strcmp(method->str.p, "output")) {
		struct jval *data = member(params, "data");
		int fd = number_or(member(params, "fd"), 1) == 1 ? 1 : 2;
		if (data && data->type == J_STR && write_all(fd, data->str.p, data->str.n) < 0)
			code = os_error();
	} else if (result) {
		code = (int)number_or(member(result, "exit_code"), 1);
	} else if (error) {
		struct jval *text = member(error, "message");
		fprintf(stderr, "error: %s\n", text && text->type == J_STR ? text->str.p : "None");
		code = (int)number_or(member(member(error, "data"), "exit_code"), 1);
	}
	jfree(message);
	return code;
}

static int exchange(int sock, const struct buf *request)
{
	if (write_all(sock, request->p, request->n) < 0)
		return os_error();
	struct buf in = {0};
	size_t scanned = 0;
	for (;;) {
		char *nl = in.n > scanned ? memchr(in.p + scanned, '\n', in.n - scanned) : NULL;
		if (nl) {
			size_t len = (size_t)(nl - in.p);
			int code = handle(in.p, len);
			if (code >= 0)
				return code;
			memmove(in.p, nl + 1, in.n - len - 1);
			in.n -= len + 1;
			scanned = 0;
			continue;
		}
		scanned = in.n;
		if (in.n > MAX_LINE) {
			fputs("error: virtnetd sent a malformed reply\n", stderr);
			return 1;
		}
		reserve(&in, 65536);
		ssize_t got = read(sock, in.p + in.n, 65536);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			return os_error();
		}
		if (got == 0) {
			fputs("error: virtnetd closed the connection\n", stderr);
			return 1;
		}
		in.n += (size_t)got;
	}
}

int main(int argc, char **argv)
{
	struct host h = {0};
	int verbose_at[argc + 1], nverbose;
	int at = split_globals(argc, argv, &h, verbose_at, &nverbose);
	const char *mode = getenv("VIRTNET_DAEMON");
	if (!mode)
		mode = "auto";
	if (strcmp(mode, "auto") && strcmp(mode, "never") && strcmp(mode, "require")) {
		fprintf(stderr, "error: VIRTNET_DAEMON: '%s' is not auto, never or require\n", mode);
		return 2;
	}
	/* the rest: -v options first, then everything from the command on */
	int nrest = at < 0 ? 0 : nverbose + (argc - at);
	char **rest = calloc((size_t)nrest + 1, sizeof *rest);
	if (!rest)
		out_of_memory();
	for (int i = 0; at >= 0 && i < nverbose; i++)
		rest[i] = argv[verbose_at[i]];
	for (int i = 0; at >= 0 && i < argc - at; i++)
		rest[nverbose + i] = argv[at + i];
	const char *command = NULL;
	for (int i = 0; i < nrest && !command; i++)
		if (rest[i][0] != '-')
			command = rest[i];
	int listed = 0;
	for (int i = 0; command && in_process_commands[i]; i++)
		listed |= !strcmp(command, in_process_commands[i]);
	if (at < 0 || !strcmp(mode, "never") || !command || listed)
		in_process(argv);

	char *path = socket_for(&h);
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock < 0) {
		fprintf(stderr, "error: virtnet: socket: %s\n", strerror(errno));
		return 1;
	}
	const char *unavailable = NULL;
	char why[PATH_MAX + 128];
	if (strlen(path) >= sizeof addr.sun_path) {
		snprintf(why, sizeof why, "cannot reach virtnetd on %s: path too long for a socket",
			 path);
		unavailable = why;
	} else {
		memcpy(addr.sun_path, path, strlen(path) + 1);
		if (connect(sock, (struct sockaddr *)&addr, sizeof addr) != 0) {
			if (errno == EACCES || errno == EPERM) {
				fprintf(stderr,
					"error: permission denied: %s is for root or the group virtnetd was "
					"configured with (--group)\n",
					path);
				return 1;
			}
			if (errno == ENOENT || errno == ECONNREFUSED || errno == ENOTSOCK)
				snprintf(why, sizeof why, "virtnetd is not running (no daemon on %s)", path);
			else
				snprintf(why, sizeof why, "cannot reach virtnetd on %s: %s", path,
					 strerror(errno));
			unavailable = why;
		}
	}
	if (unavailable) {
		close(sock);
		if (!strcmp(mode, "require")) {
			fprintf(stderr, "error: %s\n", unavailable);
			return 1;
		}
		in_process(argv);
	}
	signal(SIGPIPE, SIG_IGN); /* a closed stdout is EPIPE: exit 141, as virtnet.thin */
	signal(SIGINT, on_interrupt);

	struct buf req = {0};
	puts_(&req, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"cli\",\"params\":{\"argv\":[");
	for (int i = 0; i < nrest; i++) {
		if (i)
			puts_(&req, ",");
		put_json_string(&req, rest[i], strlen(rest[i]));
	}
	puts_(&req, "]");
	put_attachments(&req, rest, nrest);
	/* what the user chose explicitly: the daemon refuses if it serves another host */
	const char *state = h.state_dir && *h.state_dir ? h.state_dir : getenv("VIRTNET_STATE_DIR");
	char *state_abs = state && *state ? abspath(state) : NULL;
	puts_(&req, ",\"host\":{\"state_dir\":");
	put_or_null(&req, state_abs);
	puts_(&req, ",\"netns\":");
	put_or_null(&req, h.netns);
	puts_(&req, "}}}\n");
	int code = exchange(sock, &req);
	close(sock);
	return code & 0xff;
}
