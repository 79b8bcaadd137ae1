"""The frames recorded from a real Phoenix 1.7.14 node (../shared/reference/phoenix-protocol.md),
as (what the client sent, what it received in answer) pairs, for client A of the recording.

Key order in V1 objects is not significant to clients: compare parsed JSON.
"""

RECORDED_V1 = [
    ('{"topic":"room:1","event":"phx_join","payload":{},"ref":"1"}',
     ['{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"1","topic":"room:1"}']),
    ('{"topic":"room:1","event":"shout","payload":{"message":"hi"},"ref":"2"}',
     ['{"event":"shout","payload":{"message":"hi"},"ref":null,"topic":"room:1"}']),
    ('{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"3"}',
     ['{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"3","topic":"phoenix"}']),
    ('{"topic":"room:never","event":"shout","payload":{"message":"hi"},"ref":"4"}',
     ['{"event":"phx_reply","payload":{"response":{"reason":"unmatched topic"},"status":"error"},'
      '"ref":"4","topic":"room:never"}']),
    ('{"topic":"room:1","event":"phx_join","payload":{},"ref":"5"}',
     ['{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"5","topic":"room:1"}',
      '{"event":"phx_close","payload":{},"ref":null,"topic":"room:1"}']),
    ('{"topic":"room:1","event":"nope","payload":{},"ref":"6"}',
     ['{"event":"phx_error","payload":{},"ref":null,"topic":"room:1"}']),
]

RECORDED_V2 = [
    ('["1","1","room:1","phx_join",{}]', ['["1","1","room:1","phx_reply",{"response":{},"status":"ok"}]']),
    ('["1","2","room:1","shout",{"message":"hi"}]', ['[null,null,"room:1","shout",{"message":"hi"}]']),
    ('[null,"3","phoenix","heartbeat",{}]', ['[null,"3","phoenix","phx_reply",{"response":{},"status":"ok"}]']),
    ('["9","4","room:never","shout",{"message":"hi"}]',
     ['[null,"4","room:never","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}]']),
    ('["1","5","room:1","phx_leave",{}]',
     ['["1","5","room:1","phx_reply",{"response":{},"status":"ok"}]', '["1","1","room:1","phx_close",{}]']),
    ('["1","6","room:1","shout",{"message":"x"}]',
     ['[null,"6","room:1","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}]']),
]
