// The OpenAPI 3.0 description of the v1 API, served at /api/v1/openapi.json.
#pragma once

#include <string_view>

namespace kiln::web {

// A JSON document describing every route of Server::Routes(): parameters, bodies, responses.
std::string_view OpenApiDocument();

}  // namespace kiln::web
