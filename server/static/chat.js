// gossipy's chat page: a small Phoenix Channels V2 client over the browser's own WebSocket
// (no build step, no dependency), and the page around it.
//
// The client follows the official phoenix.js where users can tell the difference: the V2
// array frames, a heartbeat every 30 s (no reply within one interval: reconnect), reconnect
// backoff 10, 50, 100, 150, 200, 250, 500, 1000, 2000 ms then 5 s after any close but a
// deliberate one, rejoin of the room on every reconnect (and 1, 2, 5, then 10 s after a
// refused or unanswered join), and messages of a stale join dropped. Who is in the room comes
// from presence.js (loaded first), which syncs presences as phoenix.js's Presence does.
//
// User text only ever reaches the page through textContent / attributes, never innerHTML.
(function () {
  'use strict';

  var RECONNECT_AFTER_MS = [10, 50, 100, 150, 200, 250, 500, 1000, 2000];
  var RECONNECT_MAX_MS = 5000;
  var REJOIN_AFTER_MS = [1000, 2000, 5000];
  var REJOIN_MAX_MS = 10000;
  var HEARTBEAT_MS = 30000;
  var CONNECT_TIMEOUT_MS = 10000;
  var PUSH_TIMEOUT_MS = 10000;
  var CLUSTER_POLL_MS = 3000;
  var MAX_MESSAGES = 500;
  var ROOM_RE = /^[A-Za-z0-9_.:\-]{1,64}$/;

  // ---- where to connect -----------------------------------------------------------------------
  // Default: the node that served the page. ?port=4002 picks another port on the same host,
  // ?host=127.0.0.2 another host, ?node=HOST:PORT both (what a load balancer does for real).

  function endpointFromLocation(loc) {
    var params = new URLSearchParams(loc.search);
    var host = loc.hostname;
    var port = loc.port;
    var node = params.get('node');
    if (node) {
      var m = node.match(/^(\[[^\]]+\]|[^:]+)(?::(\d{1,5}))?$/);
      if (m) { host = m[1]; port = m[2] || port; }
    }
    if (params.get('host')) host = params.get('host');
    if (/^\d{1,5}$/.test(params.get('port') || '')) port = params.get('port');
    if (host.indexOf(':') >= 0 && host.charAt(0) !== '[') host = '[' + host + ']';
    var authority = port ? host + ':' + port : host;
    var secure = loc.protocol === 'https:';
    return {
      authority: authority,
      socketUrl: (secure ? 'wss://' : 'ws://') + authority + '/socket/websocket?vsn=2.0.0',
      clusterUrl: (secure ? 'https://' : 'http://') + authority + '/cluster',
      sameOrigin: authority === loc.host
    };
  }

  function stepDelay(steps, max, tries) {
    return tries >= 1 && tries <= steps.length ? steps[tries - 1] : max;
  }

  // ---- a minimal Phoenix socket ---------------------------------------------------------------

  function Socket(url) {
    this.url = url;
    this.conn = null;
    this.ref = 0;
    this.tries = 0;
    this.channels = [];
    this.replies = {};            // ref -> {callback, timer}
    this.pendingHeartbeat = null; // ref of the heartbeat not yet answered
    this.heartbeatTimer = null;
    this.reconnectTimer = null;
    this.connectTimer = null;
    this.closedByUser = false;
    this.handlers = {open: [], close: [], reconnecting: []};
  }

  Socket.prototype.on = function (event, fn) { this.handlers[event].push(fn); };
  Socket.prototype.emit = function (event, info) {
    this.handlers[event].forEach(function (fn) { fn(info); });
  };
  Socket.prototype.makeRef = function () { this.ref += 1; return String(this.ref); };
  Socket.prototype.isOpen = function () {
    return this.conn !== null && this.conn.readyState === WebSocket.OPEN;
  };

  Socket.prototype.connect = function () {
    var self = this;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.closedByUser = false;
    var conn;
    try {
      conn = new WebSocket(this.url);
    } catch (err) {
      // A malformed URL throws at once; treat it like any failed attempt.
      this.onConnClose(null, {code: 1006, reason: String(err)});
      return;
    }
    this.conn = conn;
    this.connectTimer = setTimeout(function () {
      if (self.conn === conn && conn.readyState === WebSocket.CONNECTING) {
        self.abandon(conn, 'connect timeout');
      }
    }, CONNECT_TIMEOUT_MS);
    conn.onopen = function () { self.onConnOpen(conn); };
    conn.onclose = function (event) { self.onConnClose(conn, event); };
    conn.onerror = function () { /* a close event always follows */ };
    conn.onmessage = function (event) { self.onConnMessage(conn, event); };
  };

  Socket.prototype.disconnect = function () {
    this.closedByUser = true;
    clearTimeout(this.reconnectTimer);
    if (this.conn) this.conn.close(1000, 'bye');
  };

  // Gives up on a connection that cannot be trusted any more (no heartbeat reply, connect
  // timeout) without waiting for a closing handshake that a dead peer would never answer.
  Socket.prototype.abandon = function (conn, reason) {
    conn.onopen = conn.onclose = conn.onmessage = conn.onerror = null;
    try { conn.close(1000, reason); } catch (err) { /* already closing */ }
    this.onConnClose(conn, {code: 1006, reason: reason});
  };

  Socket.prototype.onConnOpen = function (conn) {
    if (conn !== this.conn) return;
    var self = this;
    clearTimeout(this.connectTimer);
    this.tries = 0;
    this.pendingHeartbeat = null;
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = setInterval(function () { self.sendHeartbeat(); }, HEARTBEAT_MS);
    this.emit('open');
  };

  Socket.prototype.onConnClose = function (conn, event) {
    if (conn !== null && conn !== this.conn) return;
    var self = this;
    clearTimeout(this.connectTimer);
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
    this.pendingHeartbeat = null;
    this.conn = null;
    this.failReplies();
    this.emit('close', {code: event.code, reason: event.reason || ''});
    if (this.closedByUser) return;
    // Like phoenix.js: everything but our own close reconnects, whatever the code (1001 and
    // 1012 from a node going away, 1006 from a dropped connection, 1011, ...).
    this.tries += 1;
    var delay = stepDelay(RECONNECT_AFTER_MS, RECONNECT_MAX_MS, this.tries);
    this.emit('reconnecting', {code: event.code, reason: event.reason || '', attempt: this.tries, delay: delay});
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(function () { self.connect(); }, delay);
  };

  Socket.prototype.onConnMessage = function (conn, event) {
    if (conn !== this.conn || typeof event.data !== 'string') return;
    var frame;
    try { frame = JSON.parse(event.data); } catch (err) { return; }
    if (!Array.isArray(frame) || frame.length !== 5) return;
    var msg = {joinRef: frame[0], ref: frame[1], topic: frame[2], event: frame[3], payload: frame[4]};
    if (msg.event === 'phx_reply' && msg.ref !== null) {
      if (msg.topic === 'phoenix' && msg.ref === this.pendingHeartbeat) this.pendingHeartbeat = null;
      var waiting = this.replies[msg.ref];
      if (waiting) {
        delete this.replies[msg.ref];
        clearTimeout(waiting.timer);
        var payload = msg.payload || {};
        waiting.callback(payload.status, payload.response || {});
      }
      return;
    }
    this.channels.forEach(function (channel) {
      if (channel.topic === msg.topic) channel.onMessage(msg);
    });
  };

  Socket.prototype.failReplies = function () {
    var replies = this.replies;
    this.replies = {};
    Object.keys(replies).forEach(function (ref) {
      clearTimeout(replies[ref].timer);
      replies[ref].callback('closed', {});
    });
  };

  // Sends one frame now (false when there is no open connection). onReply(status, response)
  // gets 'timeout' or 'closed' when no reply comes.
  Socket.prototype.push = function (joinRef, ref, topic, event, payload, onReply) {
    if (!this.isOpen()) return false;
    var self = this;
    if (onReply) {
      this.replies[ref] = {
        callback: onReply,
        timer: setTimeout(function () {
          if (self.replies[ref]) { delete self.replies[ref]; onReply('timeout', {}); }
        }, PUSH_TIMEOUT_MS)
      };
    }
    this.conn.send(JSON.stringify([joinRef, ref, topic, event, payload]));
    return true;
  };

  Socket.prototype.sendHeartbeat = function () {
    if (!this.isOpen()) return;
    if (this.pendingHeartbeat !== null) {
      // The previous heartbeat went unanswered for a whole interval: the node (or the path
      // to it) is gone even if no close arrived. Reconnect, as phoenix.js does.
      this.abandon(this.conn, 'heartbeat timeout');
      return;
    }
    this.pendingHeartbeat = this.makeRef();
    this.push(null, this.pendingHeartbeat, 'phoenix', 'heartbeat', {});
  };

  // ---- a channel ------------------------------------------------------------------------------

  function Channel(socket, topic, params) {
    this.socket = socket;
    this.topic = topic;
    this.params = params;     // the join payload, sent again on every rejoin
    this.state = 'closed';   // closed | joining | joined | errored
    this.joinRef = null;
    this.rejoinTries = 0;
    this.rejoinTimer = null;
    this.handlers = {};
    var self = this;
    socket.channels.push(this);
    this.onSocketOpen = function () { if (self.state !== 'closed') self.sendJoin(); };
    this.onSocketClose = function () {
      if (self.state === 'closed') return;
      clearTimeout(self.rejoinTimer);
      self.setState('errored');
    };
    socket.on('open', this.onSocketOpen);
    socket.on('close', this.onSocketClose);
  }

  Channel.prototype.on = function (event, fn) {
    (this.handlers[event] = this.handlers[event] || []).push(fn);
  };
  Channel.prototype.emit = function (event, payload, info) {
    (this.handlers[event] || []).forEach(function (fn) { fn(payload, info); });
  };
  Channel.prototype.setState = function (state, info) {
    this.state = state;
    this.emit('state', state, info || {});
  };

  Channel.prototype.join = function () {
    this.rejoinTries = 0;
    this.setState('joining');
    if (this.socket.isOpen()) this.sendJoin();
  };

  Channel.prototype.sendJoin = function () {
    var self = this;
    clearTimeout(this.rejoinTimer);
    var ref = this.socket.makeRef();
    this.joinRef = ref;
    this.setState('joining');
    this.socket.push(ref, ref, this.topic, 'phx_join', this.params, function (status, response) {
      if (self.joinRef !== ref || self.state === 'closed') return;
      if (status === 'ok') {
        self.rejoinTries = 0;
        self.setState('joined');
      } else if (status !== 'closed') {
        // Refused or unanswered: try again later on this connection.
        self.setState('errored', {reason: (response && response.reason) || status});
        self.scheduleRejoin();
      }
    });
  };

  Channel.prototype.scheduleRejoin = function () {
    var self = this;
    this.rejoinTries += 1;
    clearTimeout(this.rejoinTimer);
    this.rejoinTimer = setTimeout(function () {
      if (self.state !== 'closed' && self.socket.isOpen()) self.sendJoin();
    }, stepDelay(REJOIN_AFTER_MS, REJOIN_MAX_MS, this.rejoinTries));
  };

  Channel.prototype.leave = function () {
    clearTimeout(this.rejoinTimer);
    if (this.state === 'joined' || this.state === 'joining') {
      this.socket.push(this.joinRef, this.socket.makeRef(), this.topic, 'phx_leave', {});
    }
    this.state = 'closed';
    this.joinRef = null;
    var socket = this.socket;
    socket.channels = socket.channels.filter(function (c) { return c !== this; }, this);
    socket.handlers.open = socket.handlers.open.filter(function (f) { return f !== this.onSocketOpen; }, this);
    socket.handlers.close = socket.handlers.close.filter(function (f) { return f !== this.onSocketClose; }, this);
  };

  Channel.prototype.push = function (event, payload) {
    if (this.state !== 'joined') return false;
    return this.socket.push(this.joinRef, this.socket.makeRef(), this.topic, event, payload);
  };

  Channel.prototype.onMessage = function (msg) {
    // A message of an earlier join of this topic (a join_ref not ours) is stale: drop it.
    if (msg.joinRef !== null && msg.joinRef !== this.joinRef) return;
    if (msg.event === 'phx_error') {
      if (this.state === 'closed') return;
      this.setState('errored', {reason: 'the room crashed'});
      this.scheduleRejoin();
      return;
    }
    if (msg.event === 'phx_close') {
      if (this.state === 'closed') return;
      this.setState('errored', {reason: 'the room was closed'});
      this.scheduleRejoin();
      return;
    }
    this.emit(msg.event, msg.payload);
  };

  // ---- the page -------------------------------------------------------------------------------

  function $(id) { return document.getElementById(id); }

  function storageGet(key) {
    try { return window.localStorage.getItem(key); } catch (err) { return null; }
  }
  function storageSet(key, value) {
    try { window.localStorage.setItem(key, value); } catch (err) { /* private mode */ }
  }

  function pad2(n) { return (n < 10 ? '0' : '') + n; }
  function clockTime(date) {
    return pad2(date.getHours()) + ':' + pad2(date.getMinutes()) + ':' + pad2(date.getSeconds());
  }
  function clip(text, max) { return text.length > max ? text.slice(0, max) + '…' : text; }

  function start() {
    var endpoint = endpointFromLocation(window.location);
    var socket = new Socket(endpoint.socketUrl);
    var channel = null;
    var nick = '';
    var room = '';
    var connected = false;
    var everConnected = false;
    var nodeName = null;
    var clusterTimer = null;
    var clusterGeneration = 0;

    var statusEl = $('status');
    var bannerEl = $('banner');
    var messagesEl = $('messages');
    var messageInput = $('message');
    var sendButton = $('send');
    var membersEl = $('members');

    $('endpoint').textContent = endpoint.socketUrl;
    var params = new URLSearchParams(window.location.search);
    $('nick').value = params.get('nick') || storageGet('gossipy.nick') || '';
    $('room').value = params.get('room') || storageGet('gossipy.room') || '1';
    if (window.matchMedia && window.matchMedia('(max-width: 720px)').matches) {
      $('cluster-panel').open = false;
      $('members-panel').open = false;
    }

    function setStatus(state, text) {
      statusEl.dataset.state = state;
      statusEl.textContent = text;
      document.body.dataset.state = state;
    }

    function showBanner(text) {
      bannerEl.textContent = text;
      bannerEl.hidden = !text;
    }

    function refreshStatus(info) {
      if (!connected) return;
      var where = nodeName || endpoint.authority;
      if (!channel) {
        setStatus('connected', 'Connected to ' + where);
      } else if (channel.state === 'joined') {
        setStatus('joined', 'Connected to ' + where + ' · room ' + room);
      } else if (channel.state === 'errored') {
        setStatus('joining', 'Could not join room ' + room + ((info && info.reason) ? ' (' + info.reason + ')' : '') + '; retrying…');
      } else {
        setStatus('joining', 'Joining room ' + room + ' on ' + where + '…');
      }
      var joined = channel !== null && channel.state === 'joined';
      messageInput.disabled = !joined;
      sendButton.disabled = !joined;
      messageInput.placeholder = joined ? 'Say something…' : 'Waiting for the room…';
    }

    function addLine(item) {
      var nearBottom = messagesEl.scrollHeight - messagesEl.scrollTop - messagesEl.clientHeight < 60;
      messagesEl.appendChild(item);
      while (messagesEl.children.length > MAX_MESSAGES) messagesEl.removeChild(messagesEl.firstChild);
      if (nearBottom) messagesEl.scrollTop = messagesEl.scrollHeight;
    }

    function addSystemLine(text) {
      var item = document.createElement('li');
      item.className = 'system';
      var time = document.createElement('time');
      var now = new Date();
      time.dateTime = now.toISOString();
      time.textContent = clockTime(now);
      var body = document.createElement('span');
      body.className = 'text';
      body.textContent = text;
      item.appendChild(time);
      item.appendChild(body);
      addLine(item);
    }

    function addShout(payload) {
      if (!payload || typeof payload !== 'object') return;
      var text = typeof payload.message === 'string' ? payload.message : JSON.stringify(payload.message);
      if (text === undefined) return;
      var user = typeof payload.user === 'string' && payload.user.trim() ? clip(payload.user.trim(), 32) : null;
      var sent = typeof payload.sent_at === 'string' ? new Date(payload.sent_at) : null;
      if (!sent || isNaN(sent.getTime())) sent = new Date();

      var item = document.createElement('li');
      item.className = 'message' + (user !== null && user === nick ? ' mine' : '');
      var head = document.createElement('div');
      head.className = 'meta';
      var who = document.createElement('span');
      who.className = 'user' + (user === null ? ' anonymous' : '');
      who.textContent = user === null ? 'anonymous' : user;
      var time = document.createElement('time');
      time.dateTime = sent.toISOString();
      time.title = sent.toLocaleString();
      time.textContent = clockTime(sent);
      head.appendChild(who);
      head.appendChild(time);
      var body = document.createElement('p');
      body.className = 'text';
      body.textContent = clip(text, 4000);
      item.appendChild(head);
      item.appendChild(body);
      addLine(item);
    }

    // -- who is in the room: one entry per name, however many tabs or devices it has joined from
    // (each a meta of its own, naming the node it is connected to).

    function renderMembers(presence) {
      var members = presence.list(function (name, entry) {
        var nodes = Object.create(null);
        var since = Infinity;
        entry.metas.forEach(function (meta) {
          var node = typeof meta.node === 'string' ? meta.node : '?';
          nodes[node] = (nodes[node] || 0) + 1;
          if (typeof meta.online_at === 'number') since = Math.min(since, meta.online_at);
        });
        return {name: name, nodes: nodes, count: entry.metas.length, since: since};
      });
      members.sort(function (a, b) { return a.name < b.name ? -1 : a.name > b.name ? 1 : 0; });
      membersEl.textContent = '';
      members.forEach(function (member) {
        var item = document.createElement('li');
        item.dataset.member = member.name;
        item.dataset.count = String(member.count);
        if (isFinite(member.since)) item.title = 'online since ' + new Date(member.since).toLocaleString();
        var who = document.createElement('span');
        who.className = 'member-name';
        who.textContent = clip(member.name, 32);
        item.appendChild(who);
        if (member.name === nick) {
          var tag = document.createElement('span');
          tag.className = 'tag';
          tag.textContent = 'you';
          item.appendChild(tag);
        }
        var where = document.createElement('span');
        where.className = 'member-nodes';
        where.textContent = Object.keys(member.nodes).sort().map(function (node) {
          return member.nodes[node] > 1 ? node + ' ×' + member.nodes[node] : node;
        }).join(' · ');
        item.appendChild(where);
        membersEl.appendChild(item);
      });
      $('member-count').textContent = '· ' + members.length;
      $('members-panel').dataset.stale = 'false';
    }

    // -- the cluster panel: GET /cluster of the node the websocket goes to.
    // (Behind a load balancer the HTTP request could in principle land on another node than the
    // websocket; with one address per node, as in the article, it is the same node.)

    function renderCluster(view) {
      var list = $('cluster-nodes');
      list.textContent = '';
      var nodes = [view.node].concat((view.nodes || []).filter(function (n) { return n !== view.node; }).sort());
      nodes.forEach(function (name, i) {
        var item = document.createElement('li');
        item.dataset.node = name;
        item.textContent = name;
        if (i === 0) {
          item.className = 'self';
          var tag = document.createElement('span');
          tag.className = 'tag';
          tag.textContent = 'this node';
          item.appendChild(tag);
        }
        list.appendChild(item);
      });
      $('node-count').textContent = nodes.length === 1 ? '· alone' : '· ' + nodes.length + ' nodes';
      $('cluster-panel').dataset.stale = 'false';
    }

    function pollCluster() {
      var generation = clusterGeneration;
      clearTimeout(clusterTimer);
      var controller = window.AbortController ? new AbortController() : null;
      var abortTimer = controller ? setTimeout(function () { controller.abort(); }, CLUSTER_POLL_MS) : null;
      fetch(endpoint.clusterUrl, {cache: 'no-store', signal: controller ? controller.signal : undefined})
        .then(function (response) {
          if (!response.ok) throw new Error('HTTP ' + response.status);
          return response.json();
        })
        .then(function (view) {
          if (generation !== clusterGeneration || !view || typeof view.node !== 'string') return;
          var fresh = nodeName !== view.node;
          nodeName = view.node;
          $('node-name').textContent = view.node;
          $('cluster-note').textContent = '';
          renderCluster(view);
          if (fresh) refreshStatus();
        })
        .catch(function (err) {
          if (generation !== clusterGeneration) return;
          $('cluster-note').textContent = endpoint.sameOrigin
            ? 'Cannot read ' + endpoint.clusterUrl + ' (' + err.message + ')'
            : 'The cluster view of ' + endpoint.authority + ' cannot be read from this page\'s origin.';
        })
        .then(function () {
          clearTimeout(abortTimer);
          if (generation === clusterGeneration && connected) {
            clusterTimer = setTimeout(pollCluster, CLUSTER_POLL_MS);
          }
        });
    }

    // -- socket events

    socket.on('open', function () {
      connected = true;
      everConnected = true;
      clusterGeneration += 1;
      showBanner('');
      refreshStatus();
      pollCluster();
    });

    socket.on('close', function () {
      var wasConnected = connected;
      connected = false;
      clusterGeneration += 1;
      clearTimeout(clusterTimer);
      $('cluster-panel').dataset.stale = 'true';
      // Kept until the rejoin's presence_state says who is still here.
      $('members-panel').dataset.stale = 'true';
      $('node-count').textContent = '';
      if (wasConnected && channel) addSystemLine('Lost the connection to ' + (nodeName || endpoint.authority) + '.');
      nodeName = null;
      messageInput.disabled = true;
      sendButton.disabled = true;
      messageInput.placeholder = 'Reconnecting…';
    });

    socket.on('reconnecting', function (info) {
      var seconds = info.delay >= 1000 ? Math.round(info.delay / 1000) + ' s' : info.delay + ' ms';
      setStatus('reconnecting', 'Reconnecting… (attempt ' + info.attempt + ', next in ' + seconds + ')');
      if (!everConnected) {
        // A browser cannot tell a refused handshake (say, check_origin) from a node that is
        // down: both are a close with 1006 before the socket opened.
        showBanner('Cannot reach ' + endpoint.authority + ' (no node answered, or it refused this page). ' +
                   'Retrying by itself.');
      } else if (info.attempt === 1 || bannerEl.hidden) {
        // Say why the connection was lost once; later failed attempts only update the status.
        var why = info.code === 1001 || info.code === 1012 ? 'the node went away, code ' + info.code
          : info.code === 1006 ? 'the connection dropped' : 'closed with code ' + info.code;
        showBanner('Disconnected from ' + endpoint.authority + ' (' + why + '). ' +
                   'Reconnecting by itself; the room will be rejoined.');
      }
      $('node-name').textContent = 'reconnecting…';
    });

    // -- the join form and the composer

    function enterRoom(newNick, newRoom) {
      if (channel) channel.leave();
      nick = newNick;
      room = newRoom;
      storageSet('gossipy.nick', nick);
      storageSet('gossipy.room', room);
      messagesEl.textContent = '';
      $('join-form').hidden = true;
      $('chat-view').hidden = false;
      var label = $('room-label');
      label.textContent = 'room ' + room + ' as ' + nick;
      label.hidden = false;
      document.title = room + ' · gossipy chat';
      channel = new Channel(socket, 'room:' + room, {name: nick});
      membersEl.textContent = '';
      $('member-count').textContent = '';
      var presence = new window.gossipyPresence.Presence(channel, function () { renderMembers(presence); });
      var everJoined = false;
      channel.on('state', function (state, info) {
        if (state === 'joined') {
          addSystemLine((everJoined ? 'Rejoined' : 'Joined') + ' room ' + room + (nodeName ? ' on ' + nodeName : '') + '.');
          everJoined = true;
        }
        refreshStatus(info);
      });
      channel.on('shout', addShout);
      channel.join();
      refreshStatus();
      messageInput.focus();
    }

    $('join-form').addEventListener('submit', function (event) {
      event.preventDefault();
      var newNick = $('nick').value.trim();
      var newRoom = $('room').value.trim();
      if (!newNick || !ROOM_RE.test(newRoom)) return;
      enterRoom(newNick, newRoom);
    });

    $('leave').addEventListener('click', function () {
      if (channel) channel.leave();
      channel = null;
      membersEl.textContent = '';
      $('member-count').textContent = '';
      $('chat-view').hidden = true;
      $('join-form').hidden = false;
      $('room-label').hidden = true;
      document.title = 'gossipy chat';
      refreshStatus();
    });

    $('composer').addEventListener('submit', function (event) {
      event.preventDefault();
      var text = messageInput.value;
      if (!text.trim() || !channel) return;
      var sent = channel.push('shout', {message: text, user: nick, sent_at: new Date().toISOString()});
      if (sent) messageInput.value = '';
    });

    setStatus('connecting', 'Connecting to ' + endpoint.authority + '…');
    socket.connect();

    // For the curious (and the browser tests): the live state, read-only by convention.
    window.gossipyChat = {
      endpoint: endpoint,
      socket: socket,
      channel: function () { return channel; }
    };
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
}());
