/*
 * Trackway browser tracker, served by `GET /tracker` and loaded by the snippet's loader line
 * (static/loader.js). It sends Tracardi's tracker payload (seed 001) to `POST /track`.
 *
 * Tracardi's own snippet loads it too: Tracardi's loader line asks for `{script}/liliput.min.js`,
 * which Trackway serves as this script, and keeps the page's early track() calls in a queue of
 * its own, which it hands to `window.tracardi.default.track` once this script has loaded.
 *
 * Shipped readable, as is: no build step. The README states its size minified and gzipped.
 *
 * What it promises the page (README "The browser tracker"):
 * - track() never throws and never blocks; problems are said once each on the console.
 * - Events tracked before the page has loaded go as ONE request once it has; later events
 *   go promptly, those close together in one request.
 * - Every event gets a UUID4 `id` when tracked: the server's deduplication key, so retries
 *   and the beacon sent when the page is left never store an event twice.
 * - identify(userId, traits) names the visitor (a Trackway extension of the payload: an
 *   `identify` object, which Tracardi's servers ignore); it goes with the next request.
 */
(() => {
  "use strict";

  // The snippet's `options` (seed 000: a top-level `const`, readable by name from any script).
  const pageOptions = () => {
    try {
      return typeof options === "object" && options ? options : null;
    } catch (_) {
      return null; // `options` declared further down the page and not yet initialised
    }
  };

  // Who loaded this script. Trackway's loader leaves a stub with its queue (`q`) and the
  // options (`o`). Tracardi's loader leaves `window.tracker.track` queueing into a private
  // list, and `window.tracardi`; it waits for `window.tracardi.default` (initialised, with a
  // track method), makes it `window.tracker` and replays its queue into it.
  const stub = window.tracker;
  const tracardi = window.tracardi;
  const fromTracardi = !(stub && Array.isArray(stub.q));
  // Without a stub or options there is no configuration; loaded twice, the first copy wins.
  if (!stub && !pageOptions()) return;
  if ((stub && stub.ready) || (tracardi && tracardi.default && tracardi.default.ready)) return;

  const SESSION_COOKIE = "trackway_session";
  const PROFILE_KEY = "trackway_profile";
  const SESSION_IDLE_MS = 30 * 60 * 1000; // a visit ends after 30 minutes without an event
  const PROFILE_COOKIE_SECONDS = 2 * 365 * 24 * 3600; // only when localStorage is unavailable
  const BATCH_MS = 100; // events tracked this close together share one request
  const MAX_EVENTS = 100; // per request; the server's default limit is 500
  const RETRY_MS = [1000, 3000, 9000]; // after a network error or a 5xx; then the batch is dropped
  const TIMEOUT_MS = 10000; // a request hanging longer counts as a network error

  // Each kind of failure is said once: a broken tracker must not flood the page's console.
  const reported = new Set();
  const report = (kind, message) => {
    if (reported.has(kind)) return;
    reported.add(kind);
    try {
      console.warn(`[trackway] ${message}`);
    } catch (_) {
      // no console: nothing to tell
    }
  };

  const config = (fromTracardi ? (pageOptions() || {}).tracker : stub.o) || {};
  const sourceId = config.source && config.source.id;
  const api = String((config.url && config.url.api) || "").replace(/\/+$/, "");
  const endpoint = `${api}/track`;

  // RFC 4122 version 4 from crypto.getRandomValues: crypto.randomUUID exists only on https pages.
  const uuid4 = () => {
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  };

  const readCookie = (name) => {
    for (const part of document.cookie.split("; ")) {
      const eq = part.indexOf("=");
      if (part.slice(0, eq) === name) return decodeURIComponent(part.slice(eq + 1));
    }
    return null;
  };

  const writeCookie = (name, value, maxAgeSeconds) => {
    let cookie = `${name}=${encodeURIComponent(value)}; path=/; SameSite=Lax`;
    if (maxAgeSeconds) cookie += `; max-age=${maxAgeSeconds}`;
    if (location.protocol === "https:") cookie += "; Secure";
    document.cookie = cookie;
  };

  // The visit (seed 001: the session id is made by the client). The cookie has no expiry, so
  // it is gone when the browser closes, and it carries the time of the last event, so 30 idle
  // minutes also start a new visit: "<uuid4>.<last event, ms since epoch>".
  const session = (touch) => {
    const now = Date.now();
    const [id, last] = (readCookie(SESSION_COOKIE) || "").split(".");
    const current = id && now - Number(last) < SESSION_IDLE_MS ? id : uuid4();
    if (touch || current !== id) writeCookie(SESSION_COOKIE, `${current}.${now}`);
    return current;
  };

  // The profile id is the server's (seed 001): kept in localStorage, in a cookie when
  // localStorage is unavailable (disabled storage, some sandboxed frames throw on access).
  const storage = (() => {
    try {
      const s = window.localStorage;
      s.setItem("trackway_probe", "1");
      s.removeItem("trackway_probe");
      return s;
    } catch (_) {
      return null;
    }
  })();
  const getProfile = () => (storage ? storage.getItem(PROFILE_KEY) : readCookie(PROFILE_KEY));
  const setProfile = (id) => {
    try {
      if (storage) storage.setItem(PROFILE_KEY, id);
      else writeCookie(PROFILE_KEY, id, PROFILE_COOKIE_SECONDS);
    } catch (_) {
      writeCookie(PROFILE_KEY, id, PROFILE_COOKIE_SECONDS); // storage full
    }
  };

  // The page context each request carries; the server keeps the landing page, referrer and
  // UTM parameters on the visit when it starts (dialects/tracardi.py, session_context).
  const pageContext = () => {
    const utm = {};
    new URLSearchParams(location.search).forEach((value, key) => {
      if (key.startsWith("utm_")) utm[key] = value;
    });
    let timezone = null;
    try {
      timezone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    } catch (_) {
      // very old engines: no Intl
    }
    return {
      page: {
        url: location.href,
        path: location.pathname,
        title: document.title,
        referrer: document.referrer || null,
      },
      browser: { language: navigator.language, timezone },
      screen: { width: screen.width, height: screen.height },
      utm,
    };
  };

  const payload = (events, identity) => {
    const body = { source: { id: sourceId }, session: { id: session(false) }, context: pageContext(), events };
    const profile = getProfile();
    if (profile) body.profile = { id: profile };
    if (identity) body.identify = identity;
    return JSON.stringify(body);
  };

  let loaded = document.readyState === "complete";
  const pending = []; // tracked, not yet in a request
  let identity = null; // the last identify() not yet in a request: {userId, traits}
  const unacked = new Set(); // batches sent but not answered (or still being retried)
  let busy = false; // one request at a time, so the next one carries the profile id just learned
  let timer = 0;

  const schedule = (delay) => {
    if (!loaded || busy || timer || !(pending.length || identity)) return;
    timer = setTimeout(() => {
      timer = 0;
      flush();
    }, delay);
  };

  const flush = () => {
    if (busy || !(pending.length || identity)) return;
    const events = pending.splice(0, MAX_EVENTS);
    const named = identity;
    identity = null;
    let body;
    try {
      body = payload(events, named);
    } catch (error) {
      report("payload", `could not build the request (${error}); ${events.length} event(s) dropped.`);
      return;
    }
    const batch = { body, count: events.length, beaconed: false };
    busy = true;
    unacked.add(batch);
    attempt(batch, 0);
  };

  // send() handles its own failures; this only keeps a bug in it off the page's console twice.
  const attempt = (batch, tries) => send(batch, tries).catch((error) => report("internal", `${error}`));

  const finish = (batch) => {
    unacked.delete(batch);
    busy = false;
    schedule(0); // events tracked meanwhile have waited long enough
  };

  // Tracardi's tracker calls window.onTracardiReady.call({tracker, helpers, context, config})
  // after its first response; pages pasted from Tracardi may bind to it. Once, in a task of its
  // own: a listener's error is the page's business.
  let tracardiTracker = null; // window.tracardi.default, when Tracardi's loader brought this script
  let readyCalled = !fromTracardi;
  const tracardiReady = (answer) => {
    const ready = window.onTracardiReady;
    readyCalled = true;
    if (!ready || typeof ready.call !== "function" || !tracardiTracker) return;
    const params = {
      tracker: tracardiTracker,
      helpers: tracardiTracker.plugins.tracardi,
      context: answer,
      config: pageOptions(),
    };
    setTimeout(() => ready.call(params), 0);
  };

  const accept = (answer) => {
    const id = answer && answer.profile && answer.profile.id;
    // Seed 001: the response names the profile to keep; a different one (a merge, a profile
    // recovered from the session) replaces the stored one.
    if (id && id !== getProfile()) setProfile(id);
    try {
      window.dispatchEvent(new CustomEvent("trackway:response", { detail: answer }));
    } catch (_) {
      // a listener's error is the page's business, not a failed request
    }
    if (!readyCalled) tracardiReady(answer);
  };

  const send = async (batch, tries) => {
    let status = 0;
    try {
      const controller = new AbortController();
      const timeout = setTimeout(() => controller.abort(), TIMEOUT_MS);
      let response;
      try {
        response = await fetch(endpoint, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: batch.body,
          credentials: "omit", // the ids travel in the body; no cookies go to Trackway
          signal: controller.signal,
        });
      } finally {
        clearTimeout(timeout);
      }
      status = response.status;
      if (response.ok) {
        accept(await response.json().catch(() => null));
        finish(batch);
        return;
      }
    } catch (_) {
      status = 0; // network error, CORS refusal or timeout
    }
    if (status >= 400 && status < 500) {
      // The request itself is wrong: sending it again cannot help.
      report(
        `http-${status}`,
        status === 401
          ? `source "${sourceId}" was refused by ${api} (401: Access denied. Invalid source.); events are not stored.`
          : `POST ${endpoint} answered ${status}; ${batch.count} event(s) dropped.`,
      );
      finish(batch);
      return;
    }
    const retry = tries < RETRY_MS.length;
    // Said once per kind (a 5xx, a network error), not once per attempt.
    report(
      status ? "server" : "network",
      `POST ${endpoint} failed (${status ? `HTTP ${status}` : "network error"}); ` +
        (retry ? "retrying." : `${batch.count} event(s) dropped after ${tries + 1} tries.`),
    );
    if (retry) {
      // Same body, same event ids: if the failed request did reach the database, the server
      // answers these events as duplicates instead of storing them twice.
      const delay = RETRY_MS[tries] * (0.8 + 0.4 * Math.random());
      setTimeout(() => attempt(batch, tries + 1), delay);
      return;
    }
    finish(batch);
  };

  // The page is being hidden or left: fetches may be cancelled, timers will not fire. Every
  // event not yet acknowledged goes by navigator.sendBeacon, which outlives the page (it posts
  // text/plain: no preflight). Ids make a batch that also arrived by fetch count once.
  const beacon = () => {
    clearTimeout(timer);
    timer = 0;
    const bodies = [];
    for (const batch of unacked) {
      if (!batch.beaconed) bodies.push(batch.body);
      batch.beaconed = true;
    }
    while (pending.length || identity) {
      bodies.push(payload(pending.splice(0, MAX_EVENTS), identity));
      identity = null;
    }
    for (const body of bodies) {
      let queued = false;
      try {
        queued = navigator.sendBeacon(endpoint, body);
      } catch (_) {
        // no sendBeacon: fall through to a keepalive fetch
      }
      if (!queued) {
        fetch(endpoint, { method: "POST", body, keepalive: true, credentials: "omit" }).catch(() => {});
      }
    }
  };

  const track = (type, properties, options, at) => {
    try {
      if (typeof type !== "string" || !type) {
        report("type", "track(type, properties, options): type must be a non-empty string; event ignored.");
        return;
      }
      // A JSON copy, made now: what was tracked is sent even if the page changes the object
      // later, and a value JSON cannot carry (a cycle) is refused here, not in a timer.
      const json = (value) => (value && typeof value === "object" ? JSON.parse(JSON.stringify(value)) : null);
      const event = {
        id: uuid4(),
        type,
        properties: json(properties) || {},
        time: new Date(at || Date.now()).toISOString(),
      };
      // Seed 001's event options (saveEvent, saveSession, ...) travel with their event.
      const eventOptions = json(options);
      if (eventOptions) event.options = eventOptions;
      session(true); // an event keeps the visit alive for another 30 minutes
      pending.push(event);
      schedule(BATCH_MS);
    } catch (error) {
      report("track", `track("${type}") ignored: ${error}`);
    }
  };

  // The visitor signed in: who they are in the site's own ids, and traits (an `email` among
  // them is how Trackway meets the same person in backends' data). Sent with the next request.
  const identify = (userId, traits) => {
    try {
      if ((typeof userId !== "string" || !userId) && typeof userId !== "number") {
        report("identify", "identify(userId, traits): userId must be a non-empty string; ignored.");
        return;
      }
      const copy = traits && typeof traits === "object" ? JSON.parse(JSON.stringify(traits)) : {};
      identity = { userId: String(userId), traits: copy };
      schedule(BATCH_MS);
    } catch (error) {
      report("identify", `identify() ignored: ${error}`);
    }
  };

  const configured = Boolean(sourceId && api);
  if (!configured) {
    report("config", "options.tracker.source.id and options.tracker.url.api are required; nothing is sent.");
  }
  const trackCall = configured ? (type, properties, options) => track(type, properties, options) : () => {};
  const identifyCall = configured ? (userId, traits) => identify(userId, traits) : () => {};

  if (fromTracardi) {
    // What Tracardi's loader checks before it hands over its queue (and, not configured, a
    // tracker that drops the calls: the one message above is all that is said).
    tracardiTracker = {
      track: trackCall,
      identify: identifyCall,
      profileId: getProfile,
      ready: true,
      getState: () => ({ plugins: { tracardi: { initialized: true, enabled: true } } }),
      plugins: { tracardi: { track: trackCall } },
    };
    if (!tracardi || typeof tracardi !== "object") window.tracardi = {};
    window.tracardi.default = tracardiTracker;
    if (!stub) window.tracker = tracardiTracker; // loaded without the loader line: nothing else will
  } else {
    // Replace the stub's methods on the same object (the page may hold a reference to it),
    // then replay what was queued before this script arrived, with the times it was tracked.
    const queued = stub.q.splice(0);
    stub.track = trackCall;
    stub.identify = identifyCall;
    stub.profileId = getProfile;
    stub.ready = true;
    // The loader queues identify() calls with a third element, 1.
    if (configured) {
      for (const [args, at, kind] of queued) {
        if (kind === 1) identify(args[0], args[1]);
        else track(args[0], args[1], args[2], at);
      }
    }
  }
  if (!configured) return;

  if (!loaded) {
    window.addEventListener("load", () => {
      loaded = true;
      schedule(0); // everything tracked while loading, in one request
    });
  }
  schedule(0);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") beacon();
  });
  window.addEventListener("pagehide", beacon);
})();
