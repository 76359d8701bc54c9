/*
 * Trackway loader: the first line of the snippet, pasted into the page's <head>
 * (README "The browser tracker"; `trackway sources create` prints it). The snippet is the
 * LAST line of this file, verbatim; dialects/tracker_script.py reads it from here.
 *
 * Why it is written this way:
 * - `window.tracker.track(...)` must work at once, before tracker.js has arrived: a stub
 *   queues each call with the time it was made, and tracker.js replays the queue (it copies
 *   the properties then; the stub stays small and only keeps the arguments as given).
 * - Seed 000's snippet declares `const options = {...}` AFTER this line, in the same
 *   <script>. A top-level `const` is a global lexical binding (readable as `options`, not
 *   as `window.options`) that exists only once the rest of that script has run, so the
 *   options are read in a setTimeout(0) task, after it.
 * - The script is inserted into <head> before the page has loaded, so it delays the
 *   window's load event, and tracker.js is ready to send the pre-load events together.
 * - A missing `options` or an unreachable script is said on the console and never thrown
 *   into the page: the page's own code goes on.
 *
 * Readable form of the line below:
 *
 *   (function (w, d) {
 *     if (w.tracker) return;                                   // pasted twice: keep the first
 *     var t = (w.tracker = { q: [], track: function () {
 *       t.q.push([[].slice.call(arguments), Date.now()]);      // [track's arguments, when]
 *     }, identify: function () {
 *       t.q.push([[].slice.call(arguments), Date.now(), 1]);   // 1: an identify() call
 *     } });
 *     setTimeout(function () {
 *       try {
 *         t.o = options.tracker;                               // the snippet's const options
 *         var s = d.createElement("script");
 *         s.async = true;
 *         s.src = t.o.url.script;
 *         s.onerror = function () { console.warn("[trackway] could not load " + s.src); };
 *         d.head.appendChild(s);
 *       } catch (e) {
 *         console.warn("[trackway] snippet not configured:", e);
 *       }
 *     }, 0);
 *   })(window, document);
 */
!function(w,d){if(w.tracker)return;var t=w.tracker={q:[],track:function(){t.q.push([[].slice.call(arguments),Date.now()])},identify:function(){t.q.push([[].slice.call(arguments),Date.now(),1])}};setTimeout(function(){try{t.o=options.tracker;var s=d.createElement("script");s.async=!0;s.src=t.o.url.script;s.onerror=function(){console.warn("[trackway] could not load "+s.src)};d.head.appendChild(s)}catch(e){console.warn("[trackway] snippet not configured:",e)}},0)}(window,document);
