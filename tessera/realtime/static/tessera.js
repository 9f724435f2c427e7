/*! tessera.js: storefront tracking (Segment spec) and the recommendation widget. No dependencies.
 *
 *   <div id="tessera-recs"></div>
 *   <script src="https://<tessera-api>/static/tessera.js"></script>
 *   <script>
 *     tessera.init({ endpoint: "https://<tessera-api>", widget: "#tessera-recs" });
 *     tessera.page();
 *     tessera.productViewed({ product_id: "p1", name: "Blue mug", category: "mugs", price: 9.5 });
 *   </script>
 *
 * Messages are Segment-spec (type, event, properties, anonymousId, userId, messageId, timestamp,
 * context), queued in localStorage, sent in batches to POST {endpoint}/v1/events as
 * {"batch": [...], "sentAt": ...} with fetch keepalive, retried with backoff on a network error,
 * 429 or 5xx (the collector is idempotent on messageId, so a resend is harmless), and handed to
 * navigator.sendBeacon when the page is hidden. The widget renders
 * GET {endpoint}/v1/visitors/{anonymousId}/recommendations and refreshes after session events.
 * docs/realtime_storefront.md.
 */
(function (window, document) {
  "use strict";
  var VERSION = "1";
  var COOKIE = "tessera_aid";
  var QUEUE_KEY = "tessera_queue";
  var USER_KEY = "tessera_uid";
  var SESSION_EVENTS = {
    "Product Viewed": 1, "Product Added": 1, "Product Removed": 1,
    "Checkout Started": 1, "Order Completed": 1, "identify": 1
  };
  var LABELS = {
    published: "Picked for you", session_knn: "Shoppers like you viewed",
    cart_complement: "Goes with", popular: "Popular", category: "More in"
  };

  var config = {
    endpoint: "", widget: null, limit: 6, batchSize: 20, flushMs: 1000, dwellSeconds: 30,
    refreshDelaysMs: [250, 1000, 2500], customerPkey: null, title: "Recommended for you",
    onProductClick: null, cookieDays: 365
  };
  var queue = [];
  var timer = null;
  var backoffMs = 0;
  var sending = false;
  var names = {};
  var dwell = null;
  var consent = null;
  var lastRendered = "";
  var asked = 0;
  var shown = 0;

  // --- ids --------------------------------------------------------------------------------------
  function uuid() {
    if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID();
    var b = new Uint8Array(16);
    window.crypto.getRandomValues(b);
    b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.prototype.map.call(b, function (x) { return (x + 0x100).toString(16).slice(1); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }
  function readCookie(name) {
    var m = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return m ? decodeURIComponent(m[1]) : null;
  }
  function anonymousId() {
    var id = readCookie(COOKIE);
    if (!id) {
      id = uuid();
      var secure = window.location.protocol === "https:" ? "; Secure" : "";
      document.cookie = COOKIE + "=" + encodeURIComponent(id) + "; Max-Age=" + config.cookieDays * 86400 +
        "; Path=/; SameSite=Lax" + secure;
    }
    return id;
  }
  function storage(key, value) {
    try {
      if (value === undefined) return window.localStorage.getItem(key);
      if (value === null) window.localStorage.removeItem(key); else window.localStorage.setItem(key, value);
    } catch (e) { /* storage refused (private mode): the in-memory queue still works */ }
    return null;
  }
  function userId() { return storage(USER_KEY); }

  // --- messages ---------------------------------------------------------------------------------
  function device() {
    var w = window.innerWidth || 1024;
    var coarse = window.matchMedia && window.matchMedia("(pointer: coarse)").matches;
    return coarse ? (w >= 768 ? "tablet" : "mobile") : "desktop";
  }
  function message(type, fields) {
    var m = {
      type: type, messageId: uuid(), anonymousId: anonymousId(), timestamp: new Date().toISOString(),
      context: {
        library: { name: "tessera.js", version: VERSION },
        page: { path: window.location.pathname, url: window.location.href, title: document.title, referrer: document.referrer },
        device: { type: device() }
      }
    };
    var uid = userId();
    if (uid) m.userId = uid;
    if (consent) m.context.consent = { categoryPreferences: consent };
    for (var k in fields) if (Object.prototype.hasOwnProperty.call(fields, k)) m[k] = fields[k];
    return m;
  }
  function enqueue(m) {
    queue.push(m);
    persist();
    if (queue.length >= config.batchSize) flush(); else schedule(config.flushMs);
    return m.messageId;
  }
  function persist() { storage(QUEUE_KEY, JSON.stringify(queue)); }
  function schedule(ms) {
    if (timer) return;
    timer = window.setTimeout(function () { timer = null; flush(); }, ms);
  }

  // --- sending ----------------------------------------------------------------------------------
  function url(path) { return config.endpoint.replace(/\/$/, "") + path; }
  function flush() {
    if (sending || !queue.length) return Promise.resolve();
    sending = true;
    var batch = queue.slice(0, config.batchSize);
    var body = JSON.stringify({ batch: batch, sentAt: new Date().toISOString() });
    var touchesSession = batch.some(function (m) { return SESSION_EVENTS[m.type === "identify" ? "identify" : m.event]; });
    return window.fetch(url("/v1/events"), {
      method: "POST", body: body, keepalive: body.length < 60000,
      headers: { "Content-Type": "application/json" }, credentials: "omit"
    }).then(function (response) {
      if (response.ok || (response.status >= 400 && response.status < 500 && response.status !== 429)) {
        // delivered, or refused as malformed: never resent (a refusal is logged, not retried forever)
        if (!response.ok) response.text().then(function (t) { console.warn("tessera: batch refused", response.status, t); });
        drop(batch);
        backoffMs = 0;
        if (touchesSession) scheduleRefresh();
      } else {
        retry();
      }
    }, retry).then(function () {
      sending = false;
      if (queue.length) schedule(backoffMs || config.flushMs);
    });
  }
  function drop(batch) {
    var sent = {};
    batch.forEach(function (m) { sent[m.messageId] = 1; });
    queue = queue.filter(function (m) { return !sent[m.messageId]; });
    persist();
  }
  function retry() { backoffMs = Math.min(backoffMs ? backoffMs * 2 : 1000, 30000); }
  function beacon() {
    // the page is going away: hand what is queued to the browser, which sends it after the unload
    if (!queue.length || !navigator.sendBeacon) return;
    var body = JSON.stringify({ batch: queue.slice(0, config.batchSize), sentAt: new Date().toISOString() });
    var sameOrigin = !config.endpoint || config.endpoint.indexOf(window.location.origin) === 0;
    // a cross-origin beacon may only carry a CORS-safelisted type: the collector reads text/plain as JSON
    var type = sameOrigin ? "application/json" : "text/plain;charset=UTF-8";
    if (navigator.sendBeacon(url("/v1/events"), new Blob([body], { type: type }))) {
      drop(queue.slice(0, config.batchSize));
    }
  }

  // --- dwell --------------------------------------------------------------------------------------
  function startDwell(product) {
    stopDwell();
    dwell = { product: product, visibleMs: 0, since: document.hidden ? null : Date.now(), timer: null };
    armDwell();
  }
  function armDwell() {
    if (!dwell || dwell.since === null) return;
    var left = config.dwellSeconds * 1000 - dwell.visibleMs;
    dwell.timer = window.setTimeout(function () {
      var d = dwell;
      dwell = null;
      track("Product Dwell", { product_id: d.product.product_id, category: d.product.category, dwell_seconds: config.dwellSeconds });
    }, Math.max(left, 0));
  }
  function pauseDwell() {
    if (!dwell || dwell.since === null) return;
    window.clearTimeout(dwell.timer);
    dwell.visibleMs += Date.now() - dwell.since;
    dwell.since = null;
  }
  function stopDwell() {
    if (dwell) window.clearTimeout(dwell.timer);
    dwell = null;
  }

  // --- the widget ---------------------------------------------------------------------------------
  function element() {
    if (!config.widget) return null;
    return typeof config.widget === "string" ? document.querySelector(config.widget) : config.widget;
  }
  function recommendationsUrl() {
    var q = "?id_type=anonymous&limit=" + encodeURIComponent(config.limit);
    if (config.customerPkey) q += "&customer_pkey=" + encodeURIComponent(config.customerPkey);
    return url("/v1/visitors/" + encodeURIComponent(anonymousId()) + "/recommendations" + q);
  }
  function refresh() {
    var el = element();
    if (!el) return Promise.resolve(null);
    var n = ++asked;
    return window.fetch(recommendationsUrl(), { credentials: "omit" }).then(function (r) {
      if (!r.ok) throw new Error("recommendations answered " + r.status);
      return r.json();
    }).then(function (body) {
      if (n > shown) { shown = n; render(el, body); }  // an older answer arriving late is not shown
      return body;
    }, function (e) {
      console.warn("tessera: " + e.message);
      return null;
    });
  }
  function scheduleRefresh() {
    // the state worker applies an event within about a second: look a few times, render on change
    config.refreshDelaysMs.forEach(function (ms) { window.setTimeout(refresh, ms); });
  }
  function why(item) {
    // the most specific reason first: the cart product it goes with, the customer's own list, the category
    function find(kind) { return item.reasons.filter(function (r) { return r.kind === kind; })[0]; }
    var complement = find("cart_complement");
    if (complement && complement.product_ids) {
      return LABELS.cart_complement + " " + complement.product_ids.map(function (p) { return names[p] || p; }).join(", ");
    }
    if (find("published")) return LABELS.published;
    var cat = find("category");
    if (cat) return LABELS.category + " " + cat.category;
    return LABELS[item.source] || item.source;
  }
  function render(el, body) {
    var key = body.items.map(function (i) { return i.product_id; }).join("|");
    el.setAttribute("data-source", body.source);
    el.setAttribute("data-state", body.state);
    el.setAttribute("data-cart", body.session ? body.session.cart : 0);
    el.setAttribute("data-views", body.session ? body.session.views : 0);
    if (key === lastRendered) return;
    lastRendered = key;
    el.textContent = "";
    var h = document.createElement("h3");
    h.textContent = config.title;
    el.appendChild(h);
    var list = document.createElement("ol");
    list.className = "tessera-recs";
    body.items.forEach(function (item) {
      if (item.product_name) names[item.product_id] = item.product_name;
      var li = document.createElement("li");
      li.setAttribute("data-product-id", item.product_id);
      li.setAttribute("data-source", item.source);
      var name = document.createElement("span");
      name.className = "tessera-name";
      name.textContent = item.product_name || item.product_id;
      var reason = document.createElement("small");
      reason.className = "tessera-why";
      reason.textContent = why(item);
      li.appendChild(name);
      li.appendChild(reason);
      if (config.onProductClick) {
        li.tabIndex = 0;
        li.addEventListener("click", function () { config.onProductClick(item); });
      }
      list.appendChild(li);
    });
    el.appendChild(list);
    el.setAttribute("data-rendered", String(Date.now()));
  }

  // --- the public calls -----------------------------------------------------------------------------
  function track(event, properties) {
    return enqueue(message("track", { event: event, properties: properties || {} }));
  }
  function product(p, extra) {
    var out = { product_id: String(p.product_id), name: p.name, category: p.category, price: p.price };
    if (p.name) names[out.product_id] = p.name;
    for (var k in extra) if (Object.prototype.hasOwnProperty.call(extra, k)) out[k] = extra[k];
    return out;
  }
  var tessera = {
    VERSION: VERSION,
    init: function (options) {
      for (var k in options) if (Object.prototype.hasOwnProperty.call(options, k)) config[k] = options[k];
      try { queue = JSON.parse(storage(QUEUE_KEY) || "[]"); } catch (e) { queue = []; }
      anonymousId();
      if (queue.length) schedule(0);  // left by a previous page: resent (idempotent on messageId)
      document.addEventListener("visibilitychange", function () {
        if (document.hidden) { pauseDwell(); beacon(); } else if (dwell) { dwell.since = Date.now(); armDwell(); }
      });
      window.addEventListener("pagehide", beacon);
      refresh();
      return tessera;
    },
    anonymousId: anonymousId,
    userId: userId,
    page: function (name, properties) {
      return enqueue(message("page", { name: name || document.title, properties: properties || {} }));
    },
    track: track,
    identify: function (uid, traits) {
      storage(USER_KEY, String(uid));
      return enqueue(message("identify", { userId: String(uid), traits: traits || {} }));
    },
    productViewed: function (p) {
      var id = track("Product Viewed", product(p));
      startDwell(product(p));
      return id;
    },
    productAdded: function (p, quantity) { return track("Product Added", product(p, { quantity: quantity || 1 })); },
    productRemoved: function (p, quantity) { return track("Product Removed", product(p, { quantity: quantity || 1 })); },
    checkoutStarted: function (products, properties) {
      var props = properties || {};
      props.products = (products || []).map(function (p) { return product(p, { quantity: p.quantity || 1 }); });
      stopDwell();
      return track("Checkout Started", props);
    },
    orderCompleted: function (orderId, products, properties) {
      var props = properties || {};
      props.order_id = String(orderId);
      props.products = (products || []).map(function (p) { return product(p, { quantity: p.quantity || 1 }); });
      return track("Order Completed", props);
    },
    consent: function (preferences) { consent = preferences; },
    reset: function () {
      storage(USER_KEY, null);
      document.cookie = COOKIE + "=; Max-Age=0; Path=/; SameSite=Lax";
      lastRendered = "";
    },
    flush: flush,
    refresh: refresh,
    queued: function () { return queue.length; }
  };
  window.tessera = tessera;
})(window, document);
