//! The bridge's checks before the `101`, as HTTP answers: the subprotocol, then the token
//! and the target.

use std::net::SocketAddr;

use http::{Request, Response, StatusCode};
use tether::AcceptOptions;

use super::{Admitted, BridgeRoute, Refused};
use crate::auth::Authenticator;
use crate::metrics::Refusal;
use crate::request::LocalAddr;
use crate::response::{self, Body};

impl BridgeRoute {
    /// The refusal of a handshake that agreed no subprotocol (`response` is the `101` built
    /// for it), if it did not.
    ///
    /// RFC 6455 §4.2.2 lets a server refuse a handshake it does not want with an HTTP error.
    /// A client that offers neither `binary` nor the route's own protocol may not mean its
    /// messages as raw TCP bytes, so it gets 400 naming what the route speaks (`tether`'s
    /// `AcceptOptions` has no "subprotocol required" switch: the check is here).
    pub(crate) fn subprotocol_refusal(
        &self,
        options: &AcceptOptions,
        response: &Response<Body>,
    ) -> Option<(Refusal, Response<Body>)> {
        if response
            .headers()
            .contains_key(http::header::SEC_WEBSOCKET_PROTOCOL)
        {
            return None;
        }
        self.metrics.refused();
        let message = format!(
            "this bridge needs a subprotocol: offer one of {} in Sec-WebSocket-Protocol",
            options.subprotocols.join(", ")
        );
        Some((
            Refusal::Subprotocol,
            response::text(StatusCode::BAD_REQUEST, message),
        ))
    }

    /// [`BridgeRoute::admit`] for `req` from `peer`, `rest` being the path below the route's;
    /// a refusal comes with its answer: 401 without a token, 403 for an unknown one or a
    /// target outside `allow`, 404 for a path a fixed-target route does not have.
    pub(crate) async fn admit_request<B>(
        &self,
        auth: &Authenticator,
        rest: &str,
        req: &Request<B>,
        peer: SocketAddr,
    ) -> Result<Admitted, (Refusal, Response<Body>)> {
        let local = req.extensions().get::<LocalAddr>().map(|l| l.0);
        let admitted = self
            .admit(auth, rest, req.headers(), req.uri().query(), peer, local)
            .await;
        admitted.map_err(|why| {
            tracing::info!(%peer, path = %req.uri().path(), "bridge refused: {why:?}");
            self.metrics.refused();
            let (status, message) = why.answer();
            match why {
                Refused::MissingToken => (
                    Refusal::Unauthorized,
                    response::unauthorized(message, false),
                ),
                _ => (Refusal::BridgeTarget, response::text(status, message)),
            }
        })
    }
}
